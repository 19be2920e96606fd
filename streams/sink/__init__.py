"""InfluxDB sink: dialect writers, a bounded disk spool for outages, and the buffered sink.

Typical use in a worker::

    writer = make_writer(settings)
    spool = DiskSpool(settings.state_dir / "sink-spool" / worker_id, max_bytes=1 << 30)
    async with BufferedSink(writer, spool) as sink:
        await sink.write(body, points)   # then commit the Kafka offsets
"""

from __future__ import annotations

from streams.sink.buffered import BufferedSink
from streams.sink.errors import SinkError, SinkRejected, SinkUnavailable, SpoolFailure
from streams.sink.spool import DiskSpool, SpoolEntry
from streams.sink.v1 import V1Writer
from streams.sink.v2 import V2Writer
from streams.sink.writers import Writer, make_writer

__all__ = [
    "BufferedSink",
    "DiskSpool",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "SpoolEntry",
    "SpoolFailure",
    "V1Writer",
    "V2Writer",
    "Writer",
    "make_writer",
]
