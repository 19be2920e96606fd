"""The analytics states' own ``__init__`` builds what their declared fields say.

``MetricState``, ``DeviceState``, ``DeviceOutput`` and ``RuleState`` write their initialiser
(``init=False``: the one ``dataclass`` generates stays a Python function under mypyc); it must
give every field its declared default, a fresh container each time, and take every field by
name and in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streams.analytics.device import DeviceOutput, DeviceState, MetricState
from streams.analytics.rules import RuleState

STATES = [MetricState, DeviceState, DeviceOutput, RuleState]


def _declared_default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    assert f.default is not dataclasses.MISSING, f"{f.name} declares no default"
    return f.default


@pytest.mark.parametrize("cls", STATES, ids=lambda c: c.__name__)
def test_no_arguments_give_the_declared_defaults(cls: type) -> None:
    made = cls()
    for f in dataclasses.fields(cls):
        assert getattr(made, f.name) == _declared_default(f), f.name
        assert type(getattr(made, f.name)) is type(_declared_default(f)), f.name


@pytest.mark.parametrize("cls", STATES, ids=lambda c: c.__name__)
def test_containers_are_not_shared(cls: type) -> None:
    a, b = cls(), cls()
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(a, f.name) is not getattr(b, f.name), f.name


def _loader() -> dict[str, dict[int, list[float]]]:
    return {}


# a value of each field's own type (compiled classes check them), none equal to its default
# or to another field's
VALUES: dict[type, list[Any]] = {
    MetricState: [{60: [61.0, 1.0]}, {0: [1.0, 1, 1.0, 1.0]}, [61.0, 1.0], 3, {8: [0, 6, None]}, 7.5],
    DeviceState: [
        1.5,
        2.5,
        3600,
        4,
        5,
        6,
        7,
        8,
        {"m0": MetricState(flat=9)},
        {"r": [0]},
        {"s": [1.0]},
        [0, 1, 2],
        {"m0": b"\0" * 8},
        {"m0": ([1.0], {1.0})},
        (1, 2, b"x"),
        _loader,
    ],
    DeviceOutput: [[None], [None], ["line"], {"m0.mean_1h": 1.0}, 3],
    RuleState: [1, 2, 3.0, 4.0, 5, 6.0, 7.0, {"x": 8.0}],
}


@pytest.mark.parametrize("cls", STATES, ids=lambda c: c.__name__)
def test_every_field_is_taken_by_name_and_in_order(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = VALUES[cls]
    assert len(values) == len(names)
    by_name = cls(**dict(zip(names, values, strict=True)))
    in_order = cls(*values)
    for f, value in zip(dataclasses.fields(cls), values, strict=True):
        # == (a compiled class keeps a float or int field unboxed: not the same object)
        assert getattr(by_name, f.name) == value, f.name
        assert getattr(in_order, f.name) == value, f.name
        assert value != _declared_default(f), f.name  # so a swapped or dropped field shows


def test_equality_still_ignores_what_is_not_the_value() -> None:
    assert DeviceState(wm=1.0) == DeviceState(wm=1.0, packed_hours=(1, 2, b"x"))
    assert DeviceState(wm=1.0) != DeviceState(wm=2.0)
    assert MetricState(flat=1) == MetricState(flat=1, means={1: [0.0]}, oldest=5.0)
    assert MetricState(flat=1) != MetricState(flat=2)
