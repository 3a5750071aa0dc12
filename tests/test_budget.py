"""Budgets: parsing with units, errors that list what is valid, resolution against a cost table."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from haqsim import CostTable, LayerTable, conv, linear
from haqsim.budget import METRICS, UNITS, Budget, format_quantity
from haqsim.errors import BudgetError


@pytest.fixture(scope="module")
def table() -> CostTable:
    wl = LayerTable.from_layers(
        [
            conv("c0", 3, 8, 3, 8, reads_image=True),
            conv("dw", 8, 8, 3, 8, groups=8),
            linear("fc", 8, 10),
        ],
        name="tiny",
    )
    return CostTable.build(wl, "bismo-edge")


@pytest.mark.parametrize(
    ("text", "metric", "value", "relative"),
    [
        ("latency=0.5x", "latency", 0.5, True),
        ("latency=50%", "latency", 0.5, True),
        ("latency = 0.6X", "latency", 0.6, True),
        ("latency=12ms", "latency", 12e-3, False),
        ("latency=250us", "latency", 250e-6, False),
        ("latency=250µs", "latency", 250e-6, False),
        ("latency=0.012", "latency", 0.012, False),
        ("latency=3s", "latency", 3.0, False),
        ("energy=2.1mJ", "energy", 2.1e-3, False),
        ("energy=7uJ", "energy", 7e-6, False),
        ("energy=0.5J", "energy", 0.5, False),
        ("energy=0.8x", "energy", 0.8, True),
        ("size=1.5MB", "size", 1.5e6, False),
        ("size=1.5MiB", "size", 1.5 * 1024**2, False),
        ("size=64KiB", "size", 65536.0, False),
        ("size=10kB", "size", 1e4, False),
        ("size=1000B", "size", 1000.0, False),
        ("size=1e3", "size", 1000.0, False),
        ("bitops=3.2Gops", "bitops", 3.2e9, False),
        ("bitops=5e8", "bitops", 5e8, False),
        ("BitOps=0.25x", "bitops", 0.25, True),
    ],
)
def test_parse(text, metric, value, relative):
    b = Budget.parse(text)
    assert b.metric == metric
    assert b.value == pytest.approx(value, rel=1e-12)
    assert b.relative is relative


@pytest.mark.parametrize(
    "text",
    [
        "latency=0.5x",
        "energy=2.1mJ",
        "size=1.5MB",
        "bitops=3.2Gops",
        "latency=12ms",
        "latency=250us",
    ],
)
def test_str_round_trips(text):
    b = Budget.parse(text)
    again = Budget.parse(str(b))
    assert again.metric == b.metric and again.relative == b.relative
    assert again.value == pytest.approx(b.value, rel=1e-3)


def test_unknown_metric_lists_valid_metrics():
    with pytest.raises(BudgetError) as err:
        Budget.parse("throughput=3x")
    msg = str(err.value)
    assert "'throughput'" in msg
    for m in METRICS:
        assert m in msg


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        ("latency=2mJ", "latency"),
        ("energy=3ms", "energy"),
        ("size=4Gops", "size"),
        ("bitops=1MB", "bitops"),
        ("energy=2MJ", "energy"),
    ],
)
def test_wrong_unit_lists_valid_units(text, metric):
    with pytest.raises(BudgetError) as err:
        Budget.parse(text)
    msg = str(err.value)
    assert text in msg
    for unit in UNITS[metric]:
        assert unit in msg


@pytest.mark.parametrize(
    "text", ["latency", "latency=", "=0.5x", "latency=fast", "latency=1..2ms", "latency=0.5x extra"]
)
def test_malformed(text):
    with pytest.raises(BudgetError, match="metric=number"):
        Budget.parse(text)


@pytest.mark.parametrize("text", ["latency=0x", "latency=-1ms", "size=0B", "energy=0%"])
def test_non_positive(text):
    with pytest.raises(BudgetError, match="> 0"):
        Budget.parse(text)


def test_constructor_validates():
    with pytest.raises(BudgetError, match="metric must be one of"):
        Budget("speed", 1.0)
    with pytest.raises(BudgetError, match="finite number > 0"):
        Budget("latency", float("nan"))
    with pytest.raises(BudgetError, match="finite number > 0"):
        Budget("latency", -2.0)
    with pytest.raises(BudgetError, match="string like"):
        Budget.parse(0.5)  # type: ignore[arg-type]


def test_frozen_and_coerce():
    b = Budget("energy", 1e-3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        b.value = 2.0  # type: ignore[misc]
    assert Budget.coerce(b) is b
    assert Budget.coerce("energy=1mJ") == b
    assert attrs.evolve(b, value=2e-3).value == 2e-3
    assert b.unit == "J" and Budget("size", 0.5, True).unit == "x"


@pytest.mark.parametrize("metric", METRICS)
def test_resolve(table, metric):
    ref = float(table.uniform(8).metric(metric)[0])
    rel = Budget(metric, 0.4, relative=True)
    assert rel.reference(table) == ref
    assert rel.resolve(table) == pytest.approx(0.4 * ref, rel=1e-15)
    absolute = Budget(metric, 123.0)
    assert absolute.resolve(table) == 123.0


def test_resolve_uses_table_values(table):
    # The 8-bit latency is the table's own uniform policy, for the table's batch.
    lat8 = table.evaluate(np.full(3, 8), np.full(3, 8)).latency_s[0]
    assert Budget.parse("latency=1x").resolve(table) == lat8


def test_format_quantity():
    assert format_quantity("latency", 2.4e-3) == "2.4 ms"
    assert format_quantity("energy", 2.1e-3) == "2.1 mJ"
    assert format_quantity("size", 1.5e6) == "1.5 MB"
    assert format_quantity("bitops", 3.2e9) == "3.2 Gops"
    assert format_quantity("latency", 5e-12) == "0.005 ns"
