"""Protocol passwords of HJ 212 stations and SL 651 RTUs: generated, or checked per protocol (pure).

The registry stores only their ``stationflow.passwords`` hash; a generated password is returned
once, in the answer of the request that made it.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Literal

from .schemas import HJ212_PW_DELIMITERS, HJ212_PW_PATTERN, SL651_PW_PATTERN

__all__ = ["LinkProtocol", "checked_password", "new_password"]

LinkProtocol = Literal["hj212", "sl651"]
HJ212_ALPHABET = string.ascii_letters + string.digits
HJ212_GENERATED_LENGTH = 6  # what stations are usually configured with (protocols.md 1.2: PW, 6 chars)


def new_password(protocol: LinkProtocol) -> str:
    """A random password: HJ 212 six letters and digits, SL 651 four upper-case hex digits."""
    if protocol == "hj212":
        return "".join(secrets.choice(HJ212_ALPHABET) for _ in range(HJ212_GENERATED_LENGTH))
    return secrets.token_hex(2).upper()


def checked_password(protocol: LinkProtocol, password: str) -> str:
    """``password`` as stored for ``protocol`` (SL 651 upper-cased); ValueError saying why not."""
    if protocol == "hj212":
        if not re.fullmatch(HJ212_PW_PATTERN, password) or any(c in HJ212_PW_DELIMITERS for c in password):
            raise ValueError(
                f"an HJ 212 password is 1-9 printable ASCII characters without {HJ212_PW_DELIMITERS!r}"
            )
        return password
    if not re.fullmatch(SL651_PW_PATTERN, password):
        raise ValueError("an SL 651 password is 4 hex digits, e.g. 'A000'")
    return password.upper()
