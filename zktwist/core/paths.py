"""Path validation (PathUtils.validatePath)."""

from __future__ import annotations


def _bad_char(c: str) -> bool:
    o = ord(c)
    return (
        o == 0
        or 0x01 <= o <= 0x1F
        or 0x7F <= o <= 0x9F
        or 0xD800 <= o <= 0xF8FF
        or o >= 0xFFF0  # includes non-BMP characters: Java sees surrogates
    )


def is_valid_path(path: str) -> bool:
    if not path or path[0] != "/":
        return False
    if len(path) == 1:
        return True
    if path[-1] == "/":
        return False
    for segment in path[1:].split("/"):
        if not segment or segment == "." or segment == "..":
            return False
    if path.isascii():
        return all(not _bad_char(c) for c in path) if not path.isprintable() else True
    return not any(_bad_char(c) for c in path)


_known_valid: set = set()


def is_valid_path_cached(path: str) -> bool:
    """:func:`is_valid_path`, remembering the (bounded number of) paths found valid."""
    if path in _known_valid:
        return True
    if not is_valid_path(path):
        return False
    if len(_known_valid) >= 65536:
        _known_valid.clear()
    _known_valid.add(path)
    return True
