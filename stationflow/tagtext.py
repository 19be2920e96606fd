"""Text that becomes an InfluxDB tag value, tag key or field key: what is accepted where it enters.

InfluxDB 1.x line protocol cannot carry a newline (or any control character) in a tag or a
key, and a backslash just before ``,``, ``=``, a space, ``"`` or the end of a tag would escape
the separator (or quote) after it. The writer (``streams.lineprotocol``) replaces such characters so nothing
can inject a second point, but a replaced value is not the value its owner meant, so the
registry and the reading contract refuse them with an error naming the field. Human text is
fine: spaces, commas, ``=``, quotes, backslashes elsewhere and any script (Chinese names) are
escaped by the writer and stored exactly.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["TAG_TEXT_PATTERN", "TagText", "check_tag_text"]

# Control characters (C0 with tab and newline, DEL, C1 with NEL U+0085), the Unicode line
# and paragraph separators, and unpaired surrogates (they cannot be encoded as UTF-8).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_BAD_BACKSLASH = re.compile(r"\\(?=[,= \"]|\Z)")
_NAMES = {0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x85: "NEL", 0x2028: "LS", 0x2029: "PS"}
_CTRL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# The same rule as a regular expression pydantic-core runs itself (no Python call per value,
# for the contracts on the hot path): runs of backslashes only before a harmless character.
TAG_TEXT_PATTERN = rf'^(?:[^{_CTRL}\\]|\\+[^{_CTRL}\\,= "])*$'


def check_tag_text(value: str) -> str:
    """``value`` if it can be stored as an InfluxDB tag or key as it is; ValueError naming why not."""
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        code = ord(bad.group())
        name = f" {_NAMES[code]}" if code in _NAMES else ""
        if code == 0:  # the registry's older wording (PostgreSQL text cannot hold NUL either)
            raise ValueError(f"must not contain NUL characters (found U+0000 at position {bad.start()})")
        raise ValueError(
            f"must not contain control characters or line breaks (found U+{code:04X}{name} "
            f"at position {bad.start()}): it is stored as an InfluxDB tag"
        )
    slash = _BAD_BACKSLASH.search(value)
    if slash is not None:
        raise ValueError(
            f"a backslash must not end the text or stand before ',', '=', '\"' or a space (position "
            f"{slash.start()}): InfluxDB tags cannot store it"
        )
    return value


TagText = Annotated[str, AfterValidator(check_tag_text)]
"""A string field that becomes an InfluxDB tag or key (station name, region, basin, unit …)."""
