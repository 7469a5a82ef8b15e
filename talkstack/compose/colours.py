"""Colours as the contract writes them (#rrggbb or #rrggbbaa)."""

from __future__ import annotations


def rgba(colour: str) -> tuple[int, int, int, int]:
    value = colour.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    a = int(value[6:8], 16) if len(value) == 8 else 255
    return r, g, b, a


def rgb(colour: str) -> tuple[int, int, int]:
    return rgba(colour)[:3]
