"""End-to-end tests of the ``haqsim`` command line (run as a subprocess, as a user would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import haqsim
from haqsim.policy import Policy


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "haqsim.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def test_estimate_table_output():
    out = run("estimate", "--workload", "mobilenet_v2", "--hardware", "bismo-edge", "--bits", "8")
    assert out.returncode == 0, out.stderr
    rep = haqsim.estimate(haqsim.zoo.mobilenet_v2(), "bismo-edge", 8, 8)
    assert f"total cycles   {rep.total_cycles:,}" in out.stdout
    assert "features.1.conv.0.0" in out.stdout and "memory-bound" in out.stdout


def test_estimate_json_mixed_bits_and_batch():
    out = run("estimate", "--workload", "resnet18", "--hardware", "bitfusion", "--w-bits", "4",
              "--a-bits", "6", "--batch", "2", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rep = haqsim.estimate(haqsim.zoo.resnet18(), "bitfusion", 4, 6, batch=2)
    assert data["totals"]["cycles"] == rep.total_cycles
    assert data["batch"] == 2 and len(data["layers"]) == 21
    assert data["layers"][0]["mapping"]["im2col"] == 1


def test_estimate_with_policy_and_user_files(tmp_path):
    wl = haqsim.zoo.mobilenet_v1()
    wl_path = tmp_path / "net.json"
    wl.to_json(wl_path)
    hw_path = tmp_path / "accel.toml"
    hw_path.write_text(haqsim.preset("bismo-cloud").to_toml())
    rng = np.random.default_rng(0)
    policy = Policy(wl.names, rng.integers(2, 9, len(wl)), rng.integers(2, 9, len(wl)))
    pol_path = tmp_path / "policy.json"
    policy.to_json(pol_path)
    out = run("estimate", "--workload", str(wl_path), "--hardware", str(hw_path), "--policy",
              str(pol_path), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    expect = haqsim.estimate(wl, "bismo-cloud", policy.w_bits, policy.a_bits)
    assert json.loads(out.stdout)["totals"]["cycles"] == expect.total_cycles


def test_table_npy_matches_cost_table(tmp_path):
    path = tmp_path / "t.npy"
    out = run("table", "--workload", "mobilenet_v2", "--hardware", "bismo-cloud", "--out",
              str(path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    arr = np.load(path)
    assert arr.shape == (53, 8, 8)
    table = haqsim.CostTable.build(haqsim.zoo.mobilenet_v2(), "bismo-cloud", cache=False)
    assert np.array_equal(arr, table.cycles)
    csv_path = tmp_path / "t.csv"
    assert run("table", "--workload", "alexnet", "--hardware", "bitfusion", "--out",
               str(csv_path), "--metric", "energy_pj").returncode == 0  # fmt: skip
    assert len(csv_path.read_text().splitlines()) == 1 + 8 * 64


def test_list_and_warmup():
    out = run("list")
    assert out.returncode == 0
    for name in ("mobilenet_v2", "resnet50", "bismo-edge", "bitfusion-wide", "stripes"):
        assert name in out.stdout
    assert run("warmup").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "mobilenet_v9", "--hardware", "bismo-edge"], "unknown workload"),
        (["--workload", "resnet18", "--hardware", "tpu"], "valid hardware presets are"),
        (["--workload", "resnet18", "--hardware", "bismo-edge", "--bits", "9"],
         "'w_bits' must be in [1, 8], got 9"),
        (["--workload", "resnet18", "--hardware", "bismo-edge", "--w-bits", "4,4"],
         "must have 21 entries"),
        (["--workload", "resnet18", "--hardware", "bismo-edge", "--w-bits", "four"],
         "--w-bits must be an integer"),
        (["--workload", "resnet18", "--hardware", "bismo-edge", "--policy", "/nonexistent.json"],
         "must be readable JSON"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(args, message):
    out = run("estimate", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
