"""The Gofer: one confined file-server process per container (see DESIGN.md).

* protocol.py  - the wire schema shared by both ends (ops, validation, errno replies)
* client.py    - GoferClient, what the Sentry calls; spawn_gofer() starts a Gofer
* server.py    - the serving loop over O_PATH handles
* hostcalls.py - descriptor-relative syscalls the os module lacks (openat2, AT_EMPTY_PATH ...)
* confine.py   - mount namespace, chroot, capabilities and seccomp of the Gofer process
"""
