"""Fast library lookup for the bindings we import (pyseccomp, python-ptrace).

Both call `ctypes.util.find_library("c")` / `("seccomp")` at import time,
which on Linux runs `ldconfig -p` in a subprocess: ~20 ms each, three times
per `runsc-py` start.  The sonames are fixed ABI names, so try loading them
directly first (no subprocess) and fall back to the real lookup otherwise.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
_original = ctypes.util.find_library
_cache: dict[str, str | None] = {}


def _find_library(name: str) -> str | None:
    if name in _cache:
        return _cache[name]
    soname = _SONAMES.get(name)
    found = None
    if soname is not None:
        try:
            ctypes.CDLL(soname)
            found = soname
        except OSError:
            found = None
    if found is None:
        found = _original(name)
    _cache[name] = found
    return found


def install() -> None:
    ctypes.util.find_library = _find_library
