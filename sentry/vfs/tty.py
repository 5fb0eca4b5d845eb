"""Terminal ioctls on a host tty handed to the container as stdio.

When `runsc-py run` is given a terminal as stdin/stdout (no
`process.terminal`), the application shares it, as under runc: the
termios and window-size ioctls go to the host tty, their structs copied
through application memory.  The sandbox's own devpts is separate.
"""
from __future__ import annotations

import errno
import fcntl

from sentry.errors import SyscallError

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, TIOCSWINSZ = 0x540F, 0x5410, 0x5413, 0x5414
TIOCSCTTY, TIOCNOTTY, TIOCGSID = 0x540E, 0x5422, 0x5429
TERMIOS_SIZE = 36      # the kernel's struct termios (not glibc's)
WINSIZE_SIZE = 8

_GET = {TCGETS: TERMIOS_SIZE, TIOCGWINSZ: WINSIZE_SIZE}
_SET = {TCSETS: TERMIOS_SIZE, TCSETSW: TERMIOS_SIZE, TCSETSF: TERMIOS_SIZE, TIOCSWINSZ: WINSIZE_SIZE}


def host_tty_ioctl(t, host_fd: int, request: int, arg: int) -> int:
    try:
        if request in _GET:
            out = fcntl.ioctl(host_fd, request, bytes(_GET[request]))
            t.mm.write(arg, out)
            return 0
        if request in _SET:
            fcntl.ioctl(host_fd, request, t.mm.read(arg, _SET[request]))
            return 0
        # Job control names the sandbox's process groups, which the host tty cannot know:
        # the foreground group and the session are kept here (gVisor does the same for host ttys).
        k = t.kernel
        if request == TIOCGPGRP:
            t.mm.write_u32(arg, k.tty_fg_pgrp or (k.init.pgid if k.init else t.tg.pgid))
            return 0
        if request == TIOCSPGRP:
            pgrp = int.from_bytes(t.mm.read(arg, 4), "little", signed=True)
            if pgrp < 0:
                raise SyscallError(errno.EINVAL)
            if not any(g.pgid == pgrp and g.sid == t.tg.sid for g in k.thread_groups.values()):
                raise SyscallError(errno.EPERM)
            k.tty_fg_pgrp = pgrp
            return 0
        if request == TIOCGSID:
            t.mm.write_u32(arg, t.tg.sid)
            return 0
        if request in (TIOCSCTTY, TIOCNOTTY):
            return 0
    except OSError as e:
        raise SyscallError(e.errno) from None
    raise SyscallError(errno.ENOTTY)
