"""Page permissions as the contract and the page tables see them."""

from __future__ import annotations

import enum


class Perm(enum.IntFlag):
    """Read/write/execute bits of a mapping. ``NONE`` is a not-present entry."""

    NONE = 0
    R = 1
    W = 2
    X = 4
    RW = R | W
    RX = R | X
    RWX = R | W | X

    @classmethod
    def parse(cls, text: str | Perm) -> Perm:
        """Parse ``"R"``, ``"RW"``, ``"RX"``, ``"RWX"``, ``"RO"`` or ``"NONE"``/``"NP"``."""
        if isinstance(text, Perm):
            return text
        key = str(text).strip().upper()
        if key in ("NONE", "NP", "-", ""):
            return cls.NONE
        if key == "RO":
            return cls.R
        value = cls.NONE
        for ch in key:
            if ch not in "RWX":
                raise ValueError(f"invalid permission {text!r}: use letters R, W, X (e.g. RX) or NONE")
            value |= cls[ch]
        return value

    def __str__(self) -> str:
        if self == Perm.NONE:
            return "NONE"
        return "".join(ch for ch in "RWX" if self & Perm[ch])

    @property
    def is_wx(self) -> bool:
        return bool(self & Perm.W) and bool(self & Perm.X)
