"""HJ 212 stream framer: partial frames, several per read, garbage, unfinished and oversize frames, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decoders import hj212
from tests.unit.ingest.hj212_samples import FRAME_A, FRAME_B, FRAME_C, FRAME_D, FRAME_NOISE, VERIFIED, build

_UNCLOSED = build(
    "QN=20240101120000000;ST=22;CN=2011;PW=1;MN=A;Flag=4;CP=&&DataTime=20240101120000;a34004-Rtd=3"
)
# the verified frames, and the framing deviations of real devices
FRAMES = (
    [frame for frame, _ in VERIFIED.values()]
    + [
        _UNCLOSED,  # no closing "&&"
        b"##0000" + FRAME_A[2:],  # 8-digit length
        FRAME_C[:-2],  # no CR LF
        FRAME_D[:-2] + b"\n",  # LF only
        b"##0050" + FRAME_A[6:],  # wrong length
    ]
)


def _feed_all(framer: hj212.Framer, chunks: list[bytes]) -> list[bytes | hj212.Hj212Error]:
    out: list[bytes | hj212.Hj212Error] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def _codes(items: list[bytes | hj212.Hj212Error]) -> list[str]:
    return [i.code if isinstance(i, hj212.Hj212Error) else "frame" for i in items]


def test_several_frames_in_one_read() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_A + FRAME_B + FRAME_C) == [FRAME_A, FRAME_B, FRAME_C]
    assert framer.pending() == 0


def test_partial_frame_waits_then_completes() -> None:
    framer = hj212.Framer()
    cut = FRAME_B.index(b"a34002-A") + 8  # where a real capture was cut (§1.12.1)
    assert framer.feed(FRAME_B[:cut]) == []
    assert framer.pending() == cut
    assert framer.feed(FRAME_B[cut:] + FRAME_A[:3]) == [FRAME_B]
    assert framer.feed(FRAME_A[3:]) == [FRAME_A]


def test_crc_and_crlf_split_across_reads() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_A[:-2]) == []  # CRC received, tail not yet: wait
    assert framer.feed(FRAME_A[-2:-1]) == []
    assert framer.feed(FRAME_A[-1:]) == [FRAME_A]


def test_garbage_between_frames_is_reported_with_its_bytes() -> None:
    framer = hj212.Framer()
    out = framer.feed(b"DTU-HEARTBEAT" + FRAME_A + b"\r\n\r\n" + b"+++AT\r\n" + FRAME_C)
    assert _codes(out) == ["hj212_garbage", "frame", "hj212_garbage", "frame"]
    first, _, second, _ = out
    assert isinstance(first, hj212.Hj212Error) and first.payload == b"DTU-HEARTBEAT"
    assert isinstance(second, hj212.Hj212Error) and second.payload == b"\r\n\r\n+++AT\r\n"
    assert framer.feed(b"\r\n\x00 ") == []  # blank bytes between frames: no complaint


def test_lone_hash_kept_until_next_byte() -> None:
    framer = hj212.Framer()
    out = framer.feed(b"xyz#")
    assert _codes(out) == ["hj212_garbage"] and framer.pending() == 1
    assert framer.feed(FRAME_A[1:]) == [FRAME_A]


def test_triple_hash_resynchronises() -> None:
    framer = hj212.Framer()
    out = framer.feed(b"#" + FRAME_A)
    assert _codes(out) == ["hj212_garbage", "frame"]
    assert out[1] == FRAME_A


def test_truncated_frame_followed_by_good_one() -> None:
    framer = hj212.Framer()
    cut = FRAME_B[:200]
    out = framer.feed(cut + FRAME_A)
    assert _codes(out) == ["hj212_truncated", "frame"]
    assert isinstance(out[0], hj212.Hj212Error) and out[0].payload == cut
    assert out[1] == FRAME_A


def test_never_finished_frame_flushed() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_B[:100]) == []
    assert framer.flush() == FRAME_B[:100]
    assert framer.pending() == 0
    assert framer.feed(FRAME_A) == [FRAME_A]


def test_finish_gives_a_last_frame_without_tail_or_truncated() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_A[:-2]) == []
    assert framer.finish() == [FRAME_A[:-2]]
    assert hj212.parse_frame(FRAME_A[:-2]).deviations == ("no_crlf",)
    framer.feed(FRAME_A[:50])
    (item,) = framer.finish()
    assert (
        isinstance(item, hj212.Hj212Error) and item.code == "hj212_truncated" and item.payload == FRAME_A[:50]
    )
    assert framer.finish() == []


def test_take_unterminated_for_a_station_without_crlf() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_C[:-2]) == []
    assert framer.take_unterminated() == FRAME_C[:-2]
    assert framer.pending() == 0
    framer.feed(FRAME_C[:-10])
    assert framer.take_unterminated() is None
    assert framer.pending() == len(FRAME_C) - 10


def test_missing_crlf_between_frames() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_A[:-2] + FRAME_C[:-2] + FRAME_D) == [FRAME_A[:-2], FRAME_C[:-2], FRAME_D]


def test_lf_only_and_cr_only_tails() -> None:
    framer = hj212.Framer()
    assert framer.feed(FRAME_A[:-1] + FRAME_C[:-2] + b"\n" + FRAME_D) == [
        FRAME_A[:-1],
        FRAME_C[:-2] + b"\n",
        FRAME_D,
    ]


def test_wrong_length_falls_back_to_terminator_scan() -> None:
    wrong = b"##0999" + FRAME_A[6:]
    framer = hj212.Framer()
    assert framer.feed(wrong) == [wrong]  # found at "&&" + CRC + CR LF, not after 999 bytes
    assert "length_mismatch" in hj212.parse_frame(wrong).deviations
    short = b"##0050" + FRAME_A[6:]
    assert framer.feed(short + FRAME_C) == [short, FRAME_C]


def test_utf8_frame_with_character_count_length() -> None:
    segment = "QN=20240101120000000;ST=22;CN=3020;PW=1;MN=A;Flag=4;CP=&&i11001-Info=//仪器故障//&&"
    frame = build(segment, length=len(segment))
    framer = hj212.Framer()
    assert framer.feed(frame[:40]) == []
    assert framer.feed(frame[40:] + FRAME_A) == [frame, FRAME_A]


def test_eight_digit_length_field() -> None:
    frame = b"##0000" + FRAME_A[2:]
    assert hj212.Framer().feed(frame + FRAME_C) == [frame, FRAME_C]


def test_undecodable_length_reported() -> None:
    bad = b"##01x1" + FRAME_A[6:]
    out = hj212.Framer().feed(bad + FRAME_C)
    assert _codes(out) == ["hj212_length", "frame"]
    assert isinstance(out[0], hj212.Hj212Error) and out[0].payload == bad


def test_oversize_frame_dropped() -> None:
    framer = hj212.Framer(max_frame_bytes=500)
    out = framer.feed(b"##0411" + b"x" * 600)
    assert _codes(out) == ["hj212_too_long"]
    assert isinstance(out[0], hj212.Hj212Error) and len(out[0].payload) == 606
    assert framer.pending() == 0
    assert _codes(framer.feed(b"yyy" + FRAME_A)) == ["hj212_garbage", "frame"]


def test_frame_longer_than_1024_within_limit() -> None:
    segment = (
        "QN=20240101120000000;ST=22;CN=2051;PW=1;MN=A;Flag=4;CP=&&DataTime=20240101120000;"
        + ";".join(f"a{n:05d}-Avg={n}" for n in range(150))
        + "&&"
    )
    frame = build(segment)
    assert len(segment) > 1024
    assert hj212.Framer().feed(frame) == [frame]


# -- fuzz ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    order=st.lists(st.sampled_from(range(len(FRAMES))), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=30),
)
def test_fuzz_random_chunking_gives_the_same_frames(order: list[int], cuts: list[int]) -> None:
    stream = b"".join(FRAMES[i] for i in order)
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(stream[pos : pos + size])
        pos += size
    chunks.append(stream[pos:])
    framer = hj212.Framer()
    assert _feed_all(framer, chunks) + framer.finish() == [FRAMES[i] for i in order]
    assert framer.pending() == 0


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.binary(max_size=80)
        | st.sampled_from(
            [b"##", b"&&", b"\r\n", b"##0101", b"##00000101", b"1C80", b"&&1C80\r\n", FRAME_NOISE]
        ),
        max_size=25,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=20),
)
def test_fuzz_random_bytes_never_raise_or_hang(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    framer = hj212.Framer(max_frame_bytes=256)
    out: list[bytes | hj212.Hj212Error] = []
    pos = 0
    for size in [*cuts, len(stream)]:
        out += framer.feed(stream[pos : pos + size])
        pos += size
        assert framer.pending() <= 256 + 64 + 80 * 25
    out += framer.finish()
    _assert_stream_accounted(stream, out)


def _assert_stream_accounted(stream: bytes, out: list[bytes | hj212.Hj212Error]) -> None:
    """The items are the stream's bytes in order; only blank bytes were dropped silently."""
    pos = 0
    for item in out:
        if isinstance(item, hj212.Hj212Error):
            assert item.code.startswith("hj212_") and item.reason
            data = item.payload
        else:
            assert item.startswith(b"##")
            data = item
        at = stream.find(data, pos)
        assert at >= 0 and not stream[pos:at].strip(b"\r\n\t \x00")
        pos = at + len(data)
    assert not stream[pos:].strip(b"\r\n\t \x00")


@pytest.mark.parametrize("step", [1, 2, 5, 13, 64])
def test_byte_by_byte_garbage_and_frames(step: int) -> None:
    stream = b"junk" + FRAME_A + FRAME_B[:150] + FRAME_C + b"\x00\r\n" + FRAME_D
    framer = hj212.Framer()
    out = _feed_all(framer, [stream[i : i + step] for i in range(0, len(stream), step)])
    frames = [i for i in out if isinstance(i, bytes)]
    assert frames == [FRAME_A, FRAME_C, FRAME_D]
    assert "hj212_truncated" in _codes(out)


def test_frame_without_closing_ampersands_found_at_its_length() -> None:
    unclosed = build(
        "QN=20240101120000000;ST=22;CN=2011;PW=1;MN=A;Flag=4;CP=&&DataTime=20240101120000;a34004-Rtd=35"
    )
    framer = hj212.Framer()
    assert framer.feed(unclosed[:-1]) == []
    assert framer.feed(unclosed[-1:] + FRAME_A) == [unclosed, FRAME_A]
    assert hj212.parse_frame(unclosed).deviations == ("cp_unclosed",)


def test_frame_without_crlf_followed_by_dtu_heartbeat() -> None:
    out = hj212.Framer().feed(FRAME_A[:-2] + b"HEARTBEAT" + FRAME_C)
    assert _codes(out) == ["frame", "hj212_garbage", "frame"]
    assert out[0] == FRAME_A[:-2] and out[2] == FRAME_C


def test_burst_of_junk_is_one_error_per_kind() -> None:
    out = hj212.Framer().feed(b"#" * 100 + b"xx#x" + FRAME_A)
    assert _codes(out) == ["hj212_garbage", "hj212_truncated", "frame"]
    assert isinstance(out[0], hj212.Hj212Error) and out[0].payload == b"#" * 98
    assert out[0].reason == "98 bytes outside a frame skipped"
    assert isinstance(out[1], hj212.Hj212Error) and out[1].payload == b"##xx#x"
    out = hj212.Framer().feed(b"##1##2##3" + FRAME_A)
    assert _codes(out) == ["hj212_truncated", "frame"]
    assert isinstance(out[0], hj212.Hj212Error) and out[0].payload == b"##1##2##3"
    assert "several runs, 9 bytes" in out[0].reason
    # runs with a frame between them stay apart (each payload is one contiguous run)
    out = hj212.Framer().feed(b"junk\r\n" + FRAME_A + b"junk")
    assert _codes(out) == ["hj212_garbage", "frame", "hj212_garbage"]
