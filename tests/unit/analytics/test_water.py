from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.analytics.water import (
    ASSESSED,
    LAKE_TP_LIMITS,
    LIMITS,
    QUALITY,
    WORSE_THAN_V,
    exceedance_multiple,
    parameter_class,
    water_class,
)


def test_table_has_the_21_assessed_basic_items() -> None:
    assert len(ASSESSED) == 21
    assert "tn" not in ASSESSED and "fecal_coliform" not in ASSESSED
    assert {"ph", "do", "codmn", "cod", "bod5", "nh3_n", "tp"} <= ASSESSED


@pytest.mark.parametrize(
    ("name", "value", "klass"),
    [
        pytest.param("nh3_n", 1.0, 3, id="spec-example-nh3n-1.0-is-III"),
        pytest.param("nh3_n", 1.0000001, 4, id="nh3n-just-above-III"),
        pytest.param("nh3_n", 0.15, 1, id="nh3n-I-boundary"),
        pytest.param("nh3_n", 2.0, 5, id="nh3n-V-boundary"),
        pytest.param("nh3_n", 2.01, WORSE_THAN_V, id="nh3n-worse-than-V"),
        pytest.param("cod", 15, 1, id="shared-limit-takes-better-class"),
        pytest.param("cod", 15.1, 3, id="cod-above-15-is-III"),
        pytest.param("bod5", 3, 1, id="bod5-shared-I-II"),
        pytest.param("hg", 0.00005, 1, id="hg-shared-I-II"),
        pytest.param("cu", 0.5, 2, id="cu-II-to-V-share-1.0"),
        pytest.param("codmn", 6, 3, id="codmn-III-boundary"),
        pytest.param("codmn", 15.5, WORSE_THAN_V, id="codmn-worse-than-V"),
        pytest.param("tp", 0.1, 2, id="tp-river"),
        pytest.param("tp", 0.1 + 0.2, 4, id="float-noise-still-meets-0.3"),
        pytest.param("do", 7.5, 1, id="do-I-boundary"),
        pytest.param("do", 7.49, 2, id="do-just-below-I"),
        pytest.param("do", 5, 3, id="do-III-boundary"),
        pytest.param("do", 2, 5, id="do-V-boundary"),
        pytest.param("do", 1.99, WORSE_THAN_V, id="do-below-2-is-worse-than-V"),
        pytest.param("ph", 6.0, 1, id="ph-low-edge-in-range"),
        pytest.param("ph", 9.0, 1, id="ph-high-edge-in-range"),
        pytest.param("ph", 5.99, WORSE_THAN_V, id="ph-below-6"),
        pytest.param("ph", 9.2, WORSE_THAN_V, id="ph-above-9"),
        pytest.param("nh3n", 0.4, 2, id="device-alias"),
        pytest.param("fecal_coliform", 10000, 3, id="fecal-coliform"),
    ],
)
def test_parameter_class(name: str, value: float, klass: int) -> None:
    assert parameter_class(name, value) == klass


def test_lake_tp_column() -> None:
    assert parameter_class("tp", 0.1, lake=True) == 4
    assert parameter_class("tp", 0.025, lake=True) == 2
    assert parameter_class("tp", 0.25, lake=True) == WORSE_THAN_V
    assert water_class({"tp": 0.06}).klass == 2
    assert water_class({"tp": 0.06}, lake=True).klass == 4
    assert LAKE_TP_LIMITS[0] < LIMITS["tp"][0]


def test_worst_parameter_decides() -> None:
    r = water_class({"ph": 7.6, "do": 6.5, "codmn": 5.0, "nh3_n": 0.3, "tp": 0.15})
    assert r.klass == 3 and r.label == "III"
    assert r.deciding == ("codmn", "tp")
    assert dict(r.per_parameter) == {"ph": 1, "do": 2, "codmn": 3, "nh3_n": 2, "tp": 3}
    assert r.wording == "符合III类"
    assert r.quality.zh == "良好" and r.quality.colour == "green"
    assert r.worse_than(2) and not r.worse_than(3) and not r.worse_than(4)


def test_worse_than_v() -> None:
    r = water_class({"do": 1.5, "nh3_n": 2.5, "codmn": 4})
    assert (r.klass, r.label, r.deciding) == (6, "劣V", ("do", "nh3_n"))
    assert r.wording == "劣于V类"
    assert r.quality == QUALITY[5] and r.quality.zh == "重度污染"
    assert r.worse_than(5)


def test_ph_out_of_range_makes_the_site_worse_than_v() -> None:
    r = water_class({"ph": 9.5, "do": 8, "codmn": 1})
    assert r.klass == WORSE_THAN_V and r.deciding == ("ph",)


def test_tn_and_fecal_coliform_are_reported_but_not_assessed() -> None:
    r = water_class({"nh3_n": 0.1, "tn": 3.0, "fecal_coliform": 50000, "temperature": 20.0}, lake=True)
    assert r.klass == 1
    assert r.per_parameter["tn"] == WORSE_THAN_V and r.per_parameter["fecal_coliform"] == WORSE_THAN_V
    assert r.unassessed == ("fecal_coliform", "temperature", "tn")
    widened = water_class({"nh3_n": 0.1, "tn": 0.8}, lake=True, assessed=ASSESSED | {"tn"})
    assert widened.klass == 3 and widened.deciding == ("tn",)


def test_results_use_the_callers_key() -> None:
    r = water_class({"nh3n": 1.2, "codmn": 3})
    assert r.deciding == ("nh3n",) and r.klass == 4


def test_do_saturation_alternative_for_class_i() -> None:
    assert water_class({"do": 7.0}).klass == 2
    assert water_class({"do": 7.0, "do_sat": 92.0}).klass == 1
    assert water_class({"do": 7.0, "do_sat": 85.0}).klass == 2


def test_nothing_to_assess_or_bad_values_raise() -> None:
    with pytest.raises(ValueError, match="no assessed"):
        water_class({"temperature": 20.0, "turbidity": 5.0})
    with pytest.raises(ValueError, match="finite"):
        water_class({"nh3_n": float("nan")})
    with pytest.raises(KeyError):
        parameter_class("turbidity", 3.0)
    with pytest.raises(ValueError):
        water_class({"do": 8}).worse_than(0)


def test_exceedance_multiple_against_class_iii() -> None:
    assert exceedance_multiple("nh3_n", 2.5) == pytest.approx(1.5)
    assert exceedance_multiple("nh3_n", 1.0) is None
    assert exceedance_multiple("tp", 0.1, lake=True) == pytest.approx(1.0)
    assert exceedance_multiple("do", 1.0) is None and exceedance_multiple("ph", 10) is None


_POLLUTANTS = sorted(ASSESSED - {"ph", "do"})
_sample = st.fixed_dictionaries(
    {
        "do": st.floats(0, 15),
        "ph": st.floats(5, 10),
        **{p: st.floats(0, LIMITS[p][4] * 2) for p in ("codmn", "nh3_n", "tp", "cod")},
    }
)


@given(_sample, st.sampled_from(["codmn", "nh3_n", "tp", "cod"]), st.floats(0, 50), st.booleans())
def test_raising_a_pollutant_never_improves_the_class(
    values: dict[str, float], name: str, extra: float, lake: bool
) -> None:
    before = water_class(values, lake=lake)
    after = water_class({**values, name: values[name] + extra}, lake=lake)
    assert after.klass >= before.klass
    assert after.per_parameter[name] >= before.per_parameter[name]


@given(_sample, st.floats(0, 10))
def test_lowering_dissolved_oxygen_never_improves_the_class(values: dict[str, float], drop: float) -> None:
    before = water_class(values)
    after = water_class({**values, "do": max(0.0, values["do"] - drop)})
    assert after.klass >= before.klass


@given(st.sampled_from(_POLLUTANTS), st.floats(0, 1e6))
def test_class_is_monotone_and_deciding_is_consistent(name: str, value: float) -> None:
    r = water_class({name: value})
    assert r.klass == r.per_parameter[name] and r.deciding == (name,)
    limits = LIMITS[name]
    if r.klass <= 5:
        assert value <= limits[r.klass - 1] * (1 + 1e-9)
    if r.klass > 1:
        assert value > limits[r.klass - 2]
