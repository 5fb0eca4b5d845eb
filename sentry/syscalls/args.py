"""Decoding raw register arguments (always unsigned 64-bit) into C types."""
from __future__ import annotations


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def u32(x: int) -> int:
    return x & 0xFFFFFFFF


def s64(x: int) -> int:
    return x - (1 << 64) if x & (1 << 63) else x
