"""Container ids, validated as runc validates them.

An id becomes a directory name under `--root`, so the rule is strict: it
must start with an alphanumeric and continue with `[A-Za-z0-9_.+-]`, at most
1024 characters.  That excludes '/', '.' and '..' by construction; we still
say so explicitly, because the state store relies on it for safety.
"""
from __future__ import annotations

import re

from runsc_py.errors import UserError

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}")


def validate_id(container_id: str) -> str:
    """Return `container_id` if it is a valid container id, else raise UserError."""
    if (not _ID_RE.fullmatch(container_id) or "/" in container_id
            or container_id in (".", "..")):
        shown = container_id if len(container_id) <= 64 else container_id[:61] + "..."
        raise UserError(f"invalid container ID format: {shown!r}")
    return container_id
