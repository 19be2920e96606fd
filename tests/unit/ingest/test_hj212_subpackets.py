"""HJ 212 sub-packets (PNUM/PNO): self-contained ones pass, fragments are concatenated in PNO order."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decoders import hj212
from tests.unit.ingest.hj212_samples import AIR, FRAME_C, FRAME_PNO, build, record

WATER_2061 = {"flow": ("L/s", "w00000"), "ph": ("pH", "w01001"), "cod": ("mg/L", "w01018")}


def _sub(qn: str, pno: int, cp: str, *, pnum: int = 2, mn: str = "MN1", cn: str = "2061") -> hj212.Frame:
    segment = f"QN={qn};ST=32;CN={cn};PW=123456;MN={mn};Flag=7;PNUM={pnum};PNO={pno};CP=&&{cp}&&"
    return hj212.parse_frame(build(segment))


def test_frames_without_subpackets_pass_through() -> None:
    packets = hj212.SubPackets()
    frame = hj212.parse_frame(FRAME_C)
    assert packets.add(frame, 0.0) is frame
    pno = hj212.parse_frame(FRAME_PNO)  # PNO=2 of 2 with its own DataTime
    assert packets.add(pno, 0.0) is pno
    assert packets.pending() == 0


def test_standard_table_c50_each_subpacket_self_contained() -> None:
    """1.6-E: two uploads, own QN each, own DataTime, whole pollutant groups: each stands alone."""
    packets = hj212.SubPackets()
    first = _sub(
        "20160801085857534", 1, "DataTime=20160801080000;w00000-Avg=12.5,w00000-Flag=N;w01001-Avg=7.1"
    )
    second = _sub("20160801085857535", 2, "DataTime=20160801080000;w01018-Avg=30.2,w01018-Flag=N")
    assert packets.add(first, 0.0) is first
    assert packets.add(second, 0.5) is second
    values = {}
    for frame in (first, second):
        decoded = hj212.to_readings(frame, record(WATER_2061), tz=ZoneInfo("Asia/Shanghai"))
        values.update({r.metric: r.value for r in decoded.readings})
    assert values == {"flow": 12.5, "ph": 7.1, "cod": 30.2}
    # each is acknowledged with its own QN
    assert b"QN=20160801085857535;ST=91;CN=9014" in hj212.reply_9014(second)


def test_fragments_concatenated_in_pno_order_out_of_order() -> None:
    packets = hj212.SubPackets()
    qn = "20240101120000123"
    parts = [
        _sub(qn, 1, "DataTime=20240101110000;a34004-Avg=3", pnum=3),
        _sub(qn, 2, "5.5,a34004-Flag=N;a34002-Av", pnum=3),
        _sub(qn, 3, "g=50,a34002-Flag=D", pnum=3),
    ]
    assert packets.add(parts[2], 0.0) is None
    assert packets.add(parts[1], 1.0) is None
    # the first fragment alone parses (DataTime, whole "a34004-Avg=3") → by the rule it stands alone
    assert packets.add(parts[0], 2.0) is parts[0]
    assert packets.pending() == 1


def test_fragments_without_datatime_in_the_first_are_merged() -> None:
    packets = hj212.SubPackets()
    qn = "20240101120000123"
    first = _sub(qn, 1, "DataTime=2024010111", pnum=3)
    second = _sub(qn, 2, "0000;a34004-Avg=35.5,a34004-Flag=N;a34002-Av", pnum=3)
    third = _sub(qn, 3, "g=50,a34002-Flag=D", pnum=3)
    assert packets.add(third, 0.0) is None
    assert packets.add(first, 1.0) is None
    merged = packets.add(second, 2.0)
    assert merged is not None
    assert merged.cp == "DataTime=20240101110000;a34004-Avg=35.5,a34004-Flag=N;a34002-Avg=50,a34002-Flag=D"
    assert (merged.qn, merged.pnum, merged.pno) == (qn, 3, None)
    assert merged.raw == first.raw + second.raw + third.raw
    decoded = hj212.to_readings(merged, record(AIR), tz=ZoneInfo("Asia/Shanghai"))
    assert {r.metric: (r.value, r.quality.value) for r in decoded.readings} == {
        "pm25": (35.5, "N"),
        "pm10": (50.0, "D"),
    }
    assert packets.pending() == 0
    assert packets.expire(1000.0) == []


def test_timeout_returns_incomplete_group() -> None:
    packets = hj212.SubPackets(timeout_s=60)
    frag = _sub("20240101120000999", 2, "a34004-Avg=1", pnum=2, mn="STATION9")
    assert packets.add(frag, 10.0) is None
    assert packets.expire(69.0) == []
    expired = packets.expire(70.0)
    assert expired == [(("STATION9", "2061", "2", "20240101120000999"), [frag])]
    assert packets.pending() == 0


def test_repeated_pno_gives_up_the_old_group_and_max_pending() -> None:
    packets = hj212.SubPackets(max_pending=2)
    old = _sub("20240101120000001", 2, "x-Avg=1")
    new = _sub("20240101120000002", 2, "x-Avg=2")
    assert packets.add(old, 0.0) is None
    assert packets.add(new, 1.0) is None
    assert packets.expire(1.0) == [(("MN1", "2061", "2", "20240101120000001"), [old])]
    for n, mn in enumerate(["A", "B", "C"]):
        packets.add(_sub(f"2024010112000010{n}", 2, "x-Avg=1", mn=mn), 2.0)
    assert packets.pending() == 2
    evicted = packets.expire(3.0)
    assert [key[0] for key, _ in evicted] == ["MN1", "A"]


_FRAGMENTS = st.tuples(
    st.sampled_from(["A", "B"]),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=3),
    st.sampled_from(
        ["a34004-Avg=1", "DataTime=20240101110000;a34004-Avg=2", "DataTime=2024", "0101110000;x-Avg=1"]
    ),
)


@settings(max_examples=200, deadline=None)
@given(fragments=st.lists(_FRAGMENTS, max_size=30), max_pending=st.integers(min_value=1, max_value=4))
def test_fuzz_every_fragment_comes_out_once(
    fragments: list[tuple[str, int, int, str]], max_pending: int
) -> None:
    packets = hj212.SubPackets(timeout_s=5, max_pending=max_pending)
    added = accounted = 0
    for n, (mn, pnum, pno, cp) in enumerate(fragments):
        pno = min(pno, pnum)
        frame = _sub(f"2024010112000{n:04d}", pno, cp, pnum=pnum, mn=mn)
        added += 1
        out = packets.add(frame, float(n))
        if out is not None:
            accounted += 1 if out is frame else len(out.raw.split(b"\r\n")) - 1
        for _, parts in packets.expire(float(n)):
            accounted += len(parts)
        assert packets.pending() <= max_pending
    for _, parts in packets.expire(float("inf")):
        accounted += len(parts)
    assert accounted == added
