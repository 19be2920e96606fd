"""``stationflow deadletters``: show refused messages with their reasons, for integrators."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from stationflow.contracts import DeadLetter
from stationflow.settings import CommonSettings
from stationflow.topics import DEADLETTER

__all__ = ["show_deadletters"]

IDLE_S = 2.0  # without --follow, stop once the topic has been quiet this long


async def _read(
    settings: CommonSettings, *, device: str | None, limit: int, follow: bool, console: Console
) -> int:
    consumer = AIOKafkaConsumer(
        settings.topic(DEADLETTER),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        quiet_since = time.monotonic()
        while follow or time.monotonic() - quiet_since < IDLE_S:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                quiet_since = time.monotonic()
                for record in records:
                    try:
                        letter = DeadLetter.model_validate_json(record.value)
                    except ValidationError:
                        continue
                    if device is None or letter.device_id == device:
                        letters.append(letter)
                        if follow:
                            _print_one(console, letter)
    finally:
        await consumer.stop()
    if not follow:
        table = Table(title=f"dead letters on {settings.topic(DEADLETTER)} (last {limit})")
        for col in ("received (UTC)", "device", "source", "code", "reason"):
            table.add_column(col, overflow="fold")
        for letter in letters[-limit:]:
            table.add_row(
                letter.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                letter.device_id or "?",
                letter.source,
                letter.code,
                letter.reason,
            )
        console.print(table)
    return len(letters)


def _print_one(console: Console, letter: DeadLetter) -> None:
    console.print(
        f"{letter.received_at:%H:%M:%S} device={letter.device_id} code={letter.code} "
        f"source={letter.source} reason={letter.reason}"
    )


def show_deadletters(*, device: str | None, limit: int, follow: bool) -> int:
    """Print dead letters (all, or one device's); returns how many matched."""
    settings = CommonSettings()
    return asyncio.run(_read(settings, device=device, limit=limit, follow=follow, console=Console()))
