"""PasswordCache: concurrent first checks of one pair share one scrypt and finish in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stationflow import passwords
from stationflow.passwords import PasswordCache, hash_password


async def test_concurrent_first_checks_share_one_scrypt_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    gate = threading.Event()
    real = passwords.verify_password

    def counted(password: str, stored: str) -> bool:
        calls.append(password)
        gate.wait(5)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", counted)
    stored = hash_password("123456")
    cache = PasswordCache()
    done: list[int] = []

    async def check(i: int) -> None:
        assert await cache.verify_off_loop("123456", stored)
        done.append(i)

    tasks = [asyncio.create_task(check(i)) for i in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(*tasks)
    # later arrivals answered from memory go after the waiters (frames keep their order)
    late = asyncio.create_task(check(20))
    await late
    cache.close()
    assert calls == ["123456"]
    assert done == list(range(21))


async def test_a_failed_first_check_lets_the_waiters_ask_again(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = hash_password("pw")
    cache = PasswordCache()
    first = asyncio.create_task(cache.verify_off_loop("pw", stored))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.verify_off_loop("pw", stored))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
    cache.close()
