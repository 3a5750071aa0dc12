"""estimate(), CostReport and CostTable: exactness, batch evaluation, caching, errors."""

from __future__ import annotations

import numpy as np
import pytest

import haqsim
from haqsim import CostTable, LayerTable, conv, linear
from haqsim._kernels.launch import force_parallel
from haqsim.errors import HardwareError, PolicyError, UnknownNameError

SMALL = LayerTable.from_layers(
    [
        conv("stem", 3, 16, 3, 32, stride=2, reads_image=True),
        conv("dw", 16, 16, 3, 16, groups=16),
        conv("pw", 16, 32, 1, 16, pad=0),
        conv("grouped", 32, 32, 3, 16, stride=2, groups=4),
        linear("fc", 32 * 8 * 8, 10),
    ],
    name="small",
)
PRESETS = haqsim.preset_names()


@pytest.mark.parametrize("hw", PRESETS)
def test_table_entries_equal_per_layer_estimates(hw):
    table = CostTable.build(SMALL, hw, cache=False)
    rng = np.random.default_rng(0)
    for _ in range(4):
        w = rng.integers(table.lo, table.hi + 1, len(SMALL))
        a = rng.integers(table.lo, table.hi + 1, len(SMALL))
        rep = haqsim.estimate(SMALL, hw, w, a)
        rows = np.arange(len(SMALL))
        assert np.array_equal(table.ints[rows, w - 1, a - 1], rep.ints)
        assert np.array_equal(table.pj[rows, w - 1, a - 1], rep.pj)
        totals = table.evaluate(w, a)
        assert int(totals.cycles[0]) == rep.total_cycles
        assert float(totals.energy_j[0]) == rep.total_energy_j  # exact, not approx
        assert float(totals.latency_s[0]) == rep.total_latency_s
        assert float(totals.size_bytes[0]) == rep.total_size_bytes
        assert int(totals.bitops[0]) == rep.total_bitops
        gathered = table.report(w, a)
        assert np.array_equal(gathered.ints, rep.ints)
        assert gathered.totals() == rep.totals()


@pytest.mark.parametrize("hw", ["bismo-edge", "bitfusion"])
def test_serial_and_parallel_kernels_agree_exactly(hw):
    """Each kernel runs in one thread for small calls and in the pool for large ones."""
    rng = np.random.default_rng(2)
    w = rng.integers(1, 9, (300, len(SMALL)))
    a = rng.integers(1, 9, (300, len(SMALL)))
    results = []
    for parallel in (False, True):
        with force_parallel(parallel):
            table = CostTable.build(SMALL, hw, cache=False)
            totals = table.evaluate(w, a)
            rep = haqsim.estimate(SMALL, hw, w[0], a[0])
        results.append((table, totals, rep))
    (t1, e1, r1), (t2, e2, r2) = results
    for field in ("ints", "pj", "mapping"):
        assert np.array_equal(getattr(t1, field), getattr(t2, field))
        assert np.array_equal(getattr(r1, field), getattr(r2, field))
    assert np.array_equal(e1.cycles, e2.cycles)
    assert np.array_equal(e1.energy_j, e2.energy_j)
    assert np.array_equal(e1.bitops, e2.bitops)


def test_evaluate_many_policies_matches_one_by_one():
    table = CostTable.build(SMALL, "bismo-edge", cache=False)
    rng = np.random.default_rng(1)
    w = rng.integers(1, 9, (500, len(SMALL)))
    a = rng.integers(1, 9, (500, len(SMALL)))
    batch = table.evaluate(w, a)
    for p in (0, 17, 499):
        rep = haqsim.estimate(SMALL, "bismo-edge", w[p], a[p])
        assert int(batch.cycles[p]) == rep.total_cycles
        assert float(batch.energy_j[p]) == rep.total_energy_j


def test_report_totals_and_units():
    rep = haqsim.estimate(SMALL, "bismo-edge", 8, 8)
    hw = haqsim.preset("bismo-edge")
    assert rep.total_latency_s == rep.total_cycles / hw.clock_hz
    assert rep.total_size_bytes == SMALL.total_params  # 8 bits = 1 byte per weight
    assert rep.total_bitops == SMALL.total_macs * 64
    split = rep.total_energy_split_j()
    assert sum(split.values()) == pytest.approx(rep.total_energy_j, rel=1e-12)
    assert all(v > 0 for v in split.values())
    assert rep.batch == hw.batch
    for layer in rep.layers():
        assert layer["cycles"] == layer["compute_cycles"] + layer["stall_cycles"]
        assert layer["bound"] in ("compute", "memory")


def test_batch_resolution_order():
    hw = haqsim.preset("bismo-cloud")
    assert haqsim.estimate(SMALL, hw).batch == 16
    assert haqsim.estimate(SMALL.with_batch(3), hw).batch == 3
    assert haqsim.estimate(SMALL.with_batch(3), hw, batch=5).batch == 5
    one = haqsim.estimate(SMALL, hw, batch=1).total_cycles
    assert haqsim.estimate(SMALL, hw, batch=4).total_cycles == 4 * one


def test_lower_bits_never_cost_more_cycles_on_bitserial():
    table = CostTable.build(haqsim.zoo.mobilenet_v2(), "bismo-edge", cache=False)
    c = table.cycles
    assert np.all(np.diff(c, axis=1) >= 0) and np.all(np.diff(c, axis=2) >= 0)


def test_uniform_costs_are_ordered():
    table = CostTable.build(haqsim.zoo.resnet18(), "bitfusion", cache=False)
    lat = [float(table.uniform(b).latency_s[0]) for b in (2, 4, 8)]
    assert lat[0] < lat[1] < lat[2]


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("HAQSIM_CACHE_DIR", str(tmp_path))
    first = CostTable.build(SMALL, "bitfusion")
    files = list((tmp_path / "tables").glob("*.npz"))
    assert len(files) == 1
    second = CostTable.build(SMALL, "bitfusion")
    assert np.array_equal(first.ints, second.ints)
    assert np.array_equal(first.pj, second.pj)
    # A different batch, hardware or workload (even one differing in one shape only, under the
    # same name) gets its own entry.
    CostTable.build(SMALL, "bitfusion", batch=2)
    CostTable.build(SMALL, "bitfusion-wide")
    wider = LayerTable.from_layers(
        [*(SMALL[i] for i in range(len(SMALL) - 1)), linear("fc", 32 * 8 * 8, 20)], name="small"
    )
    other = CostTable.build(wider, "bitfusion")
    assert len(list((tmp_path / "tables").glob("*.npz"))) == 4
    assert not np.array_equal(other.ints[-1], first.ints[-1])


def test_corrupt_cache_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("HAQSIM_CACHE_DIR", str(tmp_path))
    good = CostTable.build(SMALL, "bismo-edge")
    (path,) = (tmp_path / "tables").glob("*.npz")
    path.write_bytes(b"not an npz file")
    again = CostTable.build(SMALL, "bismo-edge")
    assert np.array_equal(good.ints, again.ints)


def test_sixteen_bit_table_on_bitfusion():
    table = CostTable.build(SMALL, "bitfusion", max_bits=16, cache=False)
    assert table.cycles.shape == (len(SMALL), 16, 16)
    rep = haqsim.estimate(SMALL, "bitfusion", 16, 12)
    assert int(table.evaluate(np.full(5, 16), np.full(5, 12)).cycles[0]) == rep.total_cycles


# ----------------------------------------------------------------- errors
def test_bits_out_of_range():
    with pytest.raises(PolicyError, match=r"layer 0 'w_bits' must be in \[1, 8\], got 9"):
        haqsim.estimate(SMALL, "bismo-edge", 9, 8)
    with pytest.raises(PolicyError, match=r"layer 2 'a_bits' must be in \[1, 16\], got 17"):
        haqsim.estimate(SMALL, "bitfusion", 8, [8, 8, 17, 8, 8])
    with pytest.raises(PolicyError, match=r"layer 1 'a_bits' must be in \[1, 8\], got 0"):
        haqsim.estimate(SMALL, "bismo-edge", 8, [8, 0, 8, 8, 8])


def test_policy_length_mismatch():
    with pytest.raises(PolicyError, match=r"'w_bits' must have 5 entries \(one per layer\)"):
        haqsim.estimate(SMALL, "bismo-edge", [8, 8], 8)
    table = CostTable.build(SMALL, "bismo-edge", cache=False)
    with pytest.raises(PolicyError, match=r"shape \(n_policies, 5\)"):
        table.evaluate(np.full((3, 4), 8), np.full((3, 4), 8))
    with pytest.raises(PolicyError, match=r"policy 2 layer 3 'a_bits' must be in \[1, 8\]"):
        a = np.full((3, 5), 8)
        a[2, 3] = 11
        table.evaluate(np.full((3, 5), 8), a)


def test_non_integer_bits():
    with pytest.raises(PolicyError, match=r"must be an integer, got 4\.5"):
        haqsim.estimate(SMALL, "bismo-edge", 4.5, 8)
    # Only the first offending layer is named, not the whole policy.
    with pytest.raises(PolicyError, match=r"^layer 2 'a_bits' must be an integer, got 3.5$"):
        haqsim.estimate(SMALL, "bismo-edge", 4, [8, 8, 3.5, 2.5, 8])
    for bad in (["4", 8, 8, 8, 8], [float("nan"), 8, 8, 8, 8], [1 + 2j, 8, 8, 8, 8]):
        with pytest.raises(PolicyError, match=r"^layer 0 'w_bits' must be an integer"):
            haqsim.estimate(SMALL, "bismo-edge", bad, 8)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid hardware presets are: bismo-cloud"):
        haqsim.estimate(SMALL, "tpu-v9")


def test_table_max_bits_out_of_range():
    with pytest.raises(PolicyError, match=r"max_bits must be an integer in \[1, 8\]"):
        CostTable.build(SMALL, "bismo-edge", max_bits=12, cache=False)


def test_hardware_argument_type():
    with pytest.raises(HardwareError, match="must be a preset name or a BitSerialConfig"):
        haqsim.estimate(SMALL, 42)
