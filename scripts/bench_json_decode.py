"""Micro-benchmark: cost of refusing duplicate JSON keys in the native JSON decoder.

    .venv/bin/python scripts/bench_json_decode.py

Prints µs per message for 1, 5 and 100 readings: the decoder as shipped, the decoder with the
duplicate-key test switched off, the cheap hot-path test alone, and the exact check (a second
parse with ``json.loads(object_pairs_hook=...)``) that only suspicious messages pay.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from ingest.decoders import native_json

NOW = datetime.now(UTC)


def _payload(readings: int) -> bytes:
    ts = NOW.isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "readings": [
                {"metric": f"m{k}", "value": k + 0.5, "unit": "ug/m3", "ts": ts} for k in range(readings)
            ]
        },
        separators=(",", ":"),
    ).encode()


def _us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    """Print the table."""
    print("readings bytes  decode  decode-without-check  cheap-test  exact-check  (µs per message)")  # noqa: T201
    for n in (1, 5, 100):
        payload = _payload(n)
        number = 20_000 if n < 100 else 2_000
        wire = native_json._WirePayload.model_validate_json(payload)

        def decode(payload: bytes = payload) -> object:
            return native_json.decode(payload, device_id="d", received_at=NOW)

        with_check = _us(decode, number)
        shipped = native_json._may_repeat_a_key
        native_json._may_repeat_a_key = lambda payload, wire: False  # type: ignore[assignment]
        try:
            without = _us(decode, number)
        finally:
            native_json._may_repeat_a_key = shipped  # type: ignore[assignment]
        cheap = _us(lambda p=payload, w=wire: native_json._may_repeat_a_key(p, w), number)
        exact = _us(lambda p=payload: native_json._refuse_duplicate_keys(p, "d"), number)
        print(f"{n:8} {len(payload):5} {with_check:7.2f} {without:21.2f} {cheap:11.2f} {exact:12.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
