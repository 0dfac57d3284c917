"""Named-choice registries: one lookup that fails with the list of known names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def lookup(registry: Mapping[str, T], name: str, what: str, hint: str = "") -> T:
    """`registry[name]`, or UnknownNameError saying what is known (and `hint`, if any)."""
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        extra = f" {hint}" if hint else ""
        raise UnknownNameError(f"unknown {what} '{name}'; known: {known}.{extra}") from None
