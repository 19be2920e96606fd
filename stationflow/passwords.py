"""Password hashing shared by every service: scrypt, and a cache for protocol passwords.

The registry keeps only :func:`hash_password` output. A collector checking the password an
HJ 212 station or SL 651 RTU sends in every frame uses :class:`PasswordCache`, so the ~50 ms
scrypt runs once per (stored hash, password) pair, not once per frame.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

__all__ = ["PasswordCache", "hash_password", "verify_password"]

SCHEME = "scrypt"
# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms per hash, the usual interactive setting.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# Upper bounds on parameters read back from a stored hash: a tampered entry must not make
# verification allocate gigabytes or spin for minutes.
MAX_N = 2**20
MAX_R = 32
MAX_P = 16
# scrypt needs about 128 * n * r bytes; entries needing more than this are refused.
MAX_SCRYPT_BYTES = 2**27


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = 2 * 128 * n * r  # scrypt's 128*n*r bytes plus its small extras, with room
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password(password: str) -> str:
    """``scrypt$n=N,r=R,p=P$<salt>$<key>`` (URL-safe base64) for a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    params = f"n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}"
    return f"{SCHEME}${params}${_b64encode(salt)}${_b64encode(key)}"


def _parse_params(text: str) -> tuple[int, int, int] | None:
    """``(n, r, p)`` from ``n=..,r=..,p=..`` if well formed and within bounds, else None."""
    try:
        fields = dict(item.split("=", 1) for item in text.split(","))
        n, r, p = int(fields["n"]), int(fields["r"]), int(fields["p"])
    except (ValueError, KeyError):
        return None
    if set(fields) != {"n", "r", "p"} or not (1 < n <= MAX_N and n & (n - 1) == 0):
        return None
    if not (1 <= r <= MAX_R and 1 <= p <= MAX_P) or 128 * n * r > MAX_SCRYPT_BYTES:
        return None
    return n, r, p


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (constant-time); False for any malformed hash."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        return False
    params = _parse_params(parts[1])
    try:
        salt, expected = _b64decode(parts[2]), _b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    if params is None or not salt or len(expected) < 16:
        return False
    if _b64encode(salt) != parts[2] or _b64encode(expected) != parts[3]:
        return False  # non-canonical base64 (stray padding bits): not a hash we wrote
    actual = _scrypt(password, salt, *params, len(expected))
    return hmac.compare_digest(actual, expected)


class PasswordCache:
    """``verify_password`` with a bounded LRU of outcomes (right and wrong ones alike).

    Keyed by (stored hash, password): changing a station's password in the registry changes
    its stored hash, so nothing stale is served. Wrong passwords are cached too, so a peer
    repeating a wrong one costs one scrypt, not one per frame.

    On an event loop, ``await verify_off_loop`` (or ``warm``) runs a pair's first scrypt on one
    worker thread, which computes only: the outcomes are stored on the caller's thread, so the
    cache needs no lock, and a later ``verify`` of that pair never runs scrypt on the loop.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._known: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        # first checks in progress: concurrent callers of one pair share one scrypt and resume
        # in the order they asked (else a burst of one station's frames overtook each other)
        self._pending: dict[tuple[str, str], asyncio.Future[bool]] = {}

    def _lookup(self, key: tuple[str, str]) -> bool | None:
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
        return found

    def _remember(self, key: tuple[str, str], ok: bool) -> bool:
        self._known[key] = ok
        self._known.move_to_end(key)
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return ok

    def verify(self, password: str, stored: str) -> bool:
        """True if ``password`` matches ``stored`` (scrypt here if the pair is not known yet)."""
        key = (stored, password)
        found = self._lookup(key)
        return found if found is not None else self._remember(key, verify_password(password, stored))

    async def verify_off_loop(self, password: str, stored: str) -> bool:
        """``verify`` with a pair's first scrypt on the worker thread, so the event loop never stalls."""
        key = (stored, password)
        found = self._lookup(key)
        if found is not None:
            return found
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled() and not self._cancelling():
                    return await self.verify_off_loop(password, stored)  # the first check failed
                raise
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending[key] = future
        try:
            ok = await loop.run_in_executor(self._executor, verify_password, password, stored)
        except BaseException:
            future.cancel()  # the callers waiting on it ask again
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(self._remember(key, ok))
        return ok

    async def warm(self, password: str, stored: str) -> None:
        """Learn a pair's outcome off the loop, so a later synchronous ``verify`` is answered from memory."""
        await self.verify_off_loop(password, stored)

    @staticmethod
    def _cancelling() -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    def close(self) -> None:
        """Stop the worker thread, if one was started."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
