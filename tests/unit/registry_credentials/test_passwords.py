"""Password hashing for the device registry: scrypt, salted, self-describing, tamper-evident."""

from __future__ import annotations

import base64

import pytest

from devices.credentials import hash_password, new_password, verify_password
from devices.dynsec import check_device_id, device_role, device_role_acls


def _flip_last_char(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def test_right_password_verifies() -> None:
    stored = hash_password("s3cret-pässword")
    assert verify_password("s3cret-pässword", stored)


def test_wrong_password_fails() -> None:
    stored = hash_password("right")
    assert not verify_password("wrong", stored)
    assert not verify_password("", stored)
    assert not verify_password("right ", stored)


def test_hash_is_salted_and_self_describing() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    scheme, params, salt, key = first.split("$")
    assert (scheme, params) == ("scrypt", "n=16384,r=8,p=1")
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert "same" not in first


@pytest.mark.parametrize("part", [2, 3])
def test_tampered_salt_or_key_fails(part: int) -> None:
    fields = hash_password("pw").split("$")
    fields[part] = _flip_last_char(fields[part])
    assert not verify_password("pw", "$".join(fields))


@pytest.mark.parametrize(
    "params",
    [
        "n=8192,r=8,p=1",  # weaker cost: a different key
        "n=16384,r=8,p=1,x=1",  # unknown field
        "n=16385,r=8,p=1",  # not a power of two
        "n=4294967296,r=8,p=1",  # would allocate terabytes
        "n=16384,r=999,p=1",
        "n=16384,r=8",
        "garbage",
    ],
)
def test_tampered_parameters_fail(params: str) -> None:
    fields = hash_password("pw").split("$")
    fields[1] = params
    assert not verify_password("pw", "$".join(fields))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "pw",
        "scrypt$n=16384,r=8,p=1$$",
        "bcrypt$n=16384,r=8,p=1$c2FsdA$a2V5",
        "scrypt$n=16384,r=8,p=1$!!$??",
    ],
)
def test_malformed_hash_fails(stored: str) -> None:
    assert not verify_password("pw", stored)


def test_short_key_is_refused() -> None:
    scheme, params, salt, key = hash_password("pw").split("$")
    assert not verify_password("pw", "$".join([scheme, params, salt, key[:8]]))


def test_new_password_is_random_and_url_safe() -> None:
    passwords = {new_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert len(password) >= 24
        assert set(password) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_device_role_is_private_to_the_device() -> None:
    assert device_role("air-1") == "device:air-1"
    [acl] = device_role_acls("air-1")
    assert (acl.acltype, acl.topic, acl.allow) == ("publishClientSend", "devices/air-1/#", True)


@pytest.mark.parametrize("device_id", ["", "a/b", "air+", "#", "x" * 129, "-lead", "a b"])
def test_device_ids_that_would_break_topics_are_refused(device_id: str) -> None:
    with pytest.raises(ValueError, match="invalid device id"):
        check_device_id(device_id)
