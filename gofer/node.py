"""A Node: one file of the Gofer's served tree, held as a descriptor (see gofer/server.py)."""
from __future__ import annotations

import os
import stat as st_
from typing import Any

Reply = tuple[list[Any], int | None]            # (reply message, descriptor to donate)


class Node:
    """One file of the served tree, held as an O_PATH|O_NOFOLLOW descriptor.

    `parent`/`name` (non-directories only) say where to reopen it for I/O.
    `refs` counts the handles naming it plus the Nodes whose parent it is; at
    zero the descriptor is closed.
    """
    __slots__ = ("fd", "kind", "ident", "parent", "name", "refs")

    def __init__(self, fd: int, st: os.stat_result, parent: Node | None, name: bytes) -> None:
        self.fd = fd
        self.kind = st_.S_IFMT(st.st_mode)
        self.ident = (st.st_dev, st.st_ino)
        self.parent = parent
        self.name = name
        self.refs = 0
