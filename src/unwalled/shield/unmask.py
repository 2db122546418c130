"""Text as a reader sees it, for the detectors: disguises taken off first.

A model (or an attacker steering one) can write a marker, a key or an address
so that it reads the same to a person but no longer matches a detector: HTML
entities (``&#64;``), full-width or mathematical letters, letters of another
script that look Latin (Cyrillic ``Е``, Greek ``Α``, Cherokee ``Ꮓ``), digits of
another script (``٧``, ``७``), combining accents, and invisible characters.
``unmasked`` removes all of these, so a check can look at the text a second
time as it reads; the text itself is never changed.

Look-alike letters come from Unicode's confusables table (UTS #39), as shipped
by the ``confusable-homoglyphs`` package (MIT licence), read from its own
files: nothing is fetched.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata

from unwalled.shield.links import normalize_text

__all__ = ["unmasked", "warm"]


def warm() -> None:
    """Load the confusables table now (half a second), not at a first answer."""
    _table()


def unmasked(text: str) -> str:
    """``text`` with its disguises taken off (the same text when it has none)."""
    if text.isascii() and "&" not in text:
        return text
    text = normalize_text(html.unescape(text))
    if text.isascii():
        return text
    bare = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", bare.translate(_LookAlikes()))


class _LookAlikes(dict):
    """``str.translate`` table: each character to the ASCII one it passes for,
    worked out once per character and kept."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        value = _ascii_twin(char)
        _twins_seen[code] = value
        self[code] = value
        return value

    def __init__(self) -> None:
        super().__init__(_twins_seen)


_twins_seen: dict[int, str] = {}


def _ascii_twin(char: str) -> str:
    """The ASCII character ``char`` passes for, or ``char`` itself."""
    if char.isascii():
        return char
    digit = unicodedata.digit(char, None)  # ٧ and ७, but also ❼ and ➐
    if digit is not None:
        return str(digit)
    twins = _table().get(char)
    if twins:
        return twins[0]
    latin = _LATIN_NAME.search(unicodedata.name(char, ""))
    return latin.group(1).lower() if latin else char


_LATIN_NAME = re.compile(r"\bLATIN LETTER (?:SMALL CAPITAL|SMALL) ([A-Z])$")
"""Letters the confusables table leaves out but whose name says what they are:
small capitals such as ``ᴢ`` (LATIN LETTER SMALL CAPITAL Z)."""


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, tuple[str, ...]]:
    """Non-ASCII character to the ASCII letters, digits and signs it is
    confusable with, from the confusables data."""
    from confusable_homoglyphs import confusables

    table: dict[str, tuple[str, ...]] = {}
    for char, entries in confusables.confusables_data.items():
        if char.isascii():
            continue
        twins = tuple(c for c in (e["c"].strip("\u200e\u200f") for e in entries)
                      if len(c) == 1 and c.isascii() and c.isprintable())
        if twins:
            table[char] = twins
    return table
