"""Comma lists given on the command line or in job options (`128,512,1024`), parsed once
for every entry point, with errors that name the flag. No domain logic lives here."""

from __future__ import annotations

from collections.abc import Iterable

from cosearch.errors import UserError


def positive_ints(
    spec: str | Iterable, flag: str, example: str = "128,512,1024"
) -> tuple[int, ...]:
    """'1024, 128,128' -> (128, 1024): sorted, unique; anything but positive integers is a
    UserError naming `flag`."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = set()
    for item in items:
        s = str(item).strip()
        if not s:
            continue
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v <= 0 or str(v) != s.lstrip("+"):
            raise UserError(f"{flag}: '{s}' is not a positive integer; give e.g. {flag} {example}")
        out.add(v)
    if not out:
        raise UserError(f"{flag}: no positive integer given; give e.g. {flag} {example}")
    return tuple(sorted(out))


def names(spec: str, flag: str, known: Iterable[str]) -> tuple[str, ...]:
    """'a,b,a' -> ('a', 'b'), each one of `known`; otherwise a UserError naming `flag`."""
    known = tuple(known)
    items = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    bad = [s for s in items if s not in known]
    if bad or not items:
        raise UserError(
            f"{flag} '{spec}': unknown {', '.join(bad) if bad else 'empty list'}; "
            f"known: {', '.join(known)}"
        )
    return items


def split_top_level(spec: str) -> list[str]:
    """Split on commas outside braces and brackets (an inline JSON arch has commas)."""
    parts, depth, cur = [], 0, ""
    for c in spec:
        depth += c in "{[" and 1 or 0
        depth -= c in "}]" and 1 or 0
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
