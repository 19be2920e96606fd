"""SL 651 stream framer (split by the length field) and fuzzing of the framer and the parser."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decoders import sl651
from ingest.decoders.sl651 import Framer, Sl651Error, parse_frame, parse_report, to_readings
from stationflow.contracts import DeviceRecord, MetricSpec, Sl651Link
from tests.unit.ingest import sl651_samples as s

BEIJING = ZoneInfo("Asia/Shanghai")
PW_A000 = "A000"  # RTU password field (not a secret)
PW_0000 = "0000"  # RTU password field (not a secret)
PW_7E7E = "7E7E"  # RTU password field (not a secret)
FRAMES = [f for _, f, _ in s.VERIFIED]
EVERYTHING = DeviceRecord(
    device_id="rtu-fuzz",
    device_type="hydro_rtu",
    domain="hydro",
    metrics={
        m: MetricSpec(metric=m, unit="1", sl651_code=c)
        for m, c in {"rain": "DRP", "level": "Z", "vt": "VT", "drz": "DRZ1", "x": "X7A", "pj": "PJ"}.items()
    },
    protocol="sl651",
    sl651=Sl651Link(address="1090330853", level_base_m=12.5),
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def frames_of(items: list[bytes | Sl651Error]) -> list[bytes]:
    return [i for i in items if isinstance(i, bytes)]


def errors_of(items: list[bytes | Sl651Error]) -> list[Sl651Error]:
    return [i for i in items if isinstance(i, Sl651Error)]


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes | Sl651Error]:
    out: list[bytes | Sl651Error] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_one_frame_one_feed() -> None:
    framer = Framer()
    assert framer.feed(s.TIMED_32) == [s.TIMED_32]
    assert framer.pending() == 0


def test_partial_frames_byte_by_byte() -> None:
    framer = Framer()
    out = feed_all(framer, [bytes([b]) for b in s.RIVER_34])
    assert out == [s.RIVER_34]
    assert framer.pending() == 0


def test_partial_frame_is_held_and_flushed() -> None:
    framer = Framer()
    assert framer.feed(s.TIMED_32[:40]) == []
    assert framer.pending() == 40
    assert framer.flush() == s.TIMED_32[:40]
    assert framer.pending() == 0


def test_several_frames_in_one_feed_hex_and_ascii() -> None:
    framer = Framer()
    data = b"".join(FRAMES)
    assert framer.feed(data) == FRAMES


def test_body_containing_7e7e_is_not_split() -> None:
    # a keep-alive whose serial is 7E 7E and whose time holds 7E: a naive splitter cuts it
    body = bytes.fromhex("7E7E 7E0202094100".replace(" ", ""))
    raw = sl651.encode_hex_frame(center=0x7E, address="7E7E7E7E7E", password=PW_7E7E, fc=0x2F, body=body)
    assert raw.count(b"\x7e\x7e") > 3
    framer = Framer()
    assert feed_all(framer, [raw[:20], raw[20:], s.KEEPALIVE_7E08]) == [raw, s.KEEPALIVE_7E08]


def test_garbage_between_frames_is_reported_with_its_bytes() -> None:
    framer = Framer()
    out = framer.feed(b"AT+CSQ\r\n" + s.KEEPALIVE_2F + b"\x00\xff\x7e" + s.TIMED_32)
    assert frames_of(out) == [s.KEEPALIVE_2F, s.TIMED_32]
    errors = errors_of(out)
    assert [e.code for e in errors] == ["sl651_garbage", "sl651_garbage"]
    assert [e.payload for e in errors] == [b"AT+CSQ\r\n", b"\x00\xff\x7e"]
    assert out.index(errors[0]) == 0 and isinstance(out[2], Sl651Error)  # stream order kept


def test_bad_crc_then_good_frame() -> None:
    bad = bytearray(s.TIMED_32)
    bad[40] ^= 0x10
    framer = Framer()
    out = framer.feed(bytes(bad) + s.KEEPALIVE_2F)
    assert frames_of(out) == [s.KEEPALIVE_2F]
    [error] = errors_of(out)
    assert error.code == "sl651_crc"
    assert error.payload == bytes(bad)
    assert "resynchronised" in error.reason


def test_oversize_header_is_skipped() -> None:
    framer = Framer(max_frame_bytes=64)
    out = framer.feed(s.TIMED_32 + s.KEEPALIVE_2F)
    assert frames_of(out) == [s.KEEPALIVE_2F]
    [error] = errors_of(out)
    assert error.code == "sl651_oversize"
    assert error.payload == s.TIMED_32


def test_trailing_garbage_is_reported_at_once_but_a_lone_7e_waits() -> None:
    framer = Framer()
    out = framer.feed(b"hello\x7e")
    assert [(e.code, e.payload) for e in errors_of(out)] == [("sl651_garbage", b"hello")]
    assert framer.pending() == 1
    assert framer.feed(s.KEEPALIVE_2F[1:]) == [s.KEEPALIVE_2F]


def test_a_false_start_inside_garbage_waits_then_resyncs() -> None:
    # "7E 7E" + a plausible header in garbage: the framer waits for the announced length,
    # then the CRC fails and it finds the real frame inside the bytes it held.
    fake = bytes.fromhex("7E7E01109033085300002F0020020000")
    framer = Framer()
    out = feed_all(framer, [fake, s.KEEPALIVE_2F, s.TIMED_32])
    assert frames_of(out) == [s.KEEPALIVE_2F, s.TIMED_32]
    assert sum(len(e.payload) for e in errors_of(out)) == len(fake)


# ------------------------------------------------------------------------------------ fuzz

garbage = st.binary(max_size=40).filter(lambda b: b"\x7e" not in b and b"\x01" not in b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.tuples(st.sampled_from(FRAMES), garbage), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=40),
)
def test_random_chunking_gives_the_same_frames(picks: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(g + f for f, g in picks)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(stream[pos : pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    out = feed_all(Framer(), chunks)
    assert frames_of(out) == [f for f, _ in picks]
    assert b"".join(e.payload for e in errors_of(out)) == b"".join(g for _, g in picks)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.binary(max_size=300), max_size=8), seed=st.sampled_from([b"", *FRAMES]))
def test_random_bytes_never_raise_and_every_byte_is_accounted_for(data: list[bytes], seed: bytes) -> None:
    framer = Framer(max_frame_bytes=512)
    chunks = [seed, *data, seed]
    out = feed_all(framer, chunks)
    for item in out:
        assert isinstance(item, bytes | Sl651Error)
        if isinstance(item, Sl651Error):
            assert item.code.startswith("sl651_") and item.reason and item.payload
    assert b"".join(i if isinstance(i, bytes) else i.payload for i in out) + framer.flush() == b"".join(
        chunks
    )
    for frame in frames_of(out):
        parse_frame(frame)  # the framer only yields frames that pass the CRC


def _reframe(body: bytes, fc: int) -> bytes:
    return sl651.encode_hex_frame(center=1, address="1090330853", password=PW_A000, fc=fc, body=body)


REPORT_FCS = sorted(sl651.REPORT_FCS | {sl651.KEEPALIVE})


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=200), fc=st.sampled_from(REPORT_FCS))
def test_parse_report_on_random_bodies_raises_only_sl651_errors(body: bytes, fc: int) -> None:
    frame = parse_frame(_reframe(body, fc))
    try:
        rep = parse_report(frame, tz=BEIJING)
    except Sl651Error as exc:
        assert exc.code.startswith("sl651_") and exc.reason
        return
    assert all(e.observed.tzinfo is not None for e in rep.elements)
    to_readings(rep, EVERYTHING)


HEX_REPORTS = [
    f for f in FRAMES if f[0] == 0x7E and parse_frame(f).fc != sl651.KEEPALIVE and parse_frame(f).upstream
]


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(HEX_REPORTS),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=6),
    cut=st.integers(min_value=0, max_value=200),
)
def test_parse_report_on_mutated_real_bodies(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    frame = parse_frame(base)
    body = bytearray(frame.body)
    for at, value in flips:
        body[at % len(body)] = value
    body = body[: max(8, len(body) - cut)] if cut < 100 else body
    try:
        rep = parse_report(parse_frame(_reframe(bytes(body), frame.fc)), tz=BEIJING)
    except Sl651Error as exc:
        assert exc.code.startswith("sl651_")
        return
    to_readings(rep, EVERYTHING)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="0123456789ABCDEF .-MSTDRNZPVJ", max_size=120), fc=st.sampled_from(REPORT_FCS))
def test_parse_report_on_random_ascii_bodies(text: str, fc: int) -> None:
    raw = sl651.encode_ascii_frame(
        center=1, address="5010123456", password=PW_0000, fc=fc, body=b"0001260909080000" + text.encode()
    )
    try:
        rep = parse_report(parse_frame(raw), tz=BEIJING)
    except Sl651Error as exc:
        assert exc.code.startswith("sl651_")
        return
    to_readings(rep, EVERYTHING)


@pytest.mark.parametrize("raw", FRAMES)
def test_every_verified_frame_survives_the_framer_with_garbage_around(raw: bytes) -> None:
    framer = Framer()
    out = framer.feed(b"\x00\x7e" + raw + b"\x7e\x7e\x00")
    assert frames_of(out) == [raw]


def test_a_false_start_announcing_a_long_frame_does_not_hold_back_real_frames() -> None:
    fake = bytes.fromhex("7E7E01109033085300002F0FFF02")  # announces 4095 body bytes
    framer = Framer()
    out = feed_all(framer, [b"noise" + fake, s.KEEPALIVE_2F, s.TIMED_32])
    assert frames_of(out) == [s.KEEPALIVE_2F, s.TIMED_32]
    errors = errors_of(out)
    assert {e.code for e in errors} == {"sl651_garbage"}
    assert b"".join(e.payload for e in errors) == b"noise" + fake
    assert framer.pending() == 0


def test_a_frame_still_arriving_is_not_mistaken_for_a_false_start() -> None:
    framer = Framer()
    out = feed_all(framer, [s.RIVER_34[:100], s.RIVER_34[100:150]])
    assert out == []
    assert framer.feed(s.RIVER_34[150:]) == [s.RIVER_34]
