"""Sockets: AF_UNIX entirely inside the Sentry (unix.py); AF_INET/AF_INET6 as host sockets
that the Sentry owns in the sandbox's network namespace (host.py)."""
