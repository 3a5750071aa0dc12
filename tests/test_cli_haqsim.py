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


def _bad_workload_files(tmp_path) -> dict[str, str]:
    """Broken workload files, each mapped to the message the CLI must print for it."""
    rows = haqsim.zoo.resnet18().to_dict()
    first = rows["layers"][0]
    cases = {
        "kind.json": ({**rows, "layers": [{**first, "kind": 7}]},
                      "layer 0 ('conv1') 'kind' must be one of 'conv' (0)"),
        "cin.json": ({**rows, "layers": [{**first, "cin": "abc"}]},
                     "layer 0 ('conv1') 'cin' must be an integer, got 'abc'"),
        "ints.json": ({**rows, "layers": [1, 2]}, "layer 0 must be an object mapping field"),
        "half.json": ({**rows, "layers": [{**first, "cout": 3.5}]}, "'cout' must be an integer"),
        "top.json": ([1], "workload must be an object with a 'layers' list, got list"),
    }  # fmt: skip
    messages = {}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        messages[name] = message
    (tmp_path / "syntax.json").write_text("{nope")
    messages["syntax.json"] = "must be readable JSON"
    lines = haqsim.zoo.resnet18().to_csv().splitlines()
    k = lines[0].split(",").index("reads_image")
    (tmp_path / "noreads.csv").write_text(
        "\n".join(",".join(c for j, c in enumerate(ln.split(",")) if j != k) for ln in lines)
    )
    messages["noreads.csv"] = "missing ['reads_image']"
    messages["nothere.json"] = "workload file 'nothere.json' does not exist; valid workloads are"
    messages["sub/nothere"] = "workload file 'sub/nothere' must end in .json or .csv"
    return messages


def test_bad_workload_files_are_clear_errors(tmp_path):
    for name, message in _bad_workload_files(tmp_path).items():
        path = name if name.startswith(("nothere", "sub/")) else str(tmp_path / name)
        out = run("estimate", "--workload", path, "--hardware", "bismo-edge", "--bits", "8")
        assert out.returncode == 2, (name, out.stdout)
        assert message in out.stderr, (name, out.stderr)
        assert "Traceback" not in out.stderr


def test_missing_hardware_file_is_not_an_unknown_preset():
    out = run("estimate", "--workload", "resnet18", "--hardware", "accel.toml")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hardware file 'accel.toml' does not exist; valid hardware presets are: " in out.stderr
    assert "bismo-edge" in out.stderr


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/nonexistent_dir/t.npy", "--out directory '/nonexistent_dir' does not exist"),
        ("t.txt", "--out must end in .npy or .csv, got 't.txt'"),
    ],
)
def test_table_bad_out_is_a_clear_error(out, message):
    res = run("table", "--workload", "bitfusion_lstm", "--hardware", "bismo-edge", "--out", out)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_table_write_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from haqsim import cli

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli.np, "save", fail)
    path = tmp_path / "t.npy"
    argv = ["table", "--workload", "bitfusion_lstm", "--hardware", "bismo-edge", "--out", str(path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out file '{path}' must be writable: [Errno 13] Permission denied" in err


def test_validate_haq_table_bad_path_is_a_clear_error(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "validate_haq_table.py")
    small = tmp_path / "small.npy"
    np.save(small, np.ones((2, 3)))
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    for path, message in [
        (tmp_path / "missing.npy", "must be a readable file"),
        (small, "must have shape (53, 8, 8), got (2, 3)"),
        (text, "must be a numeric array in .npy format"),
    ]:
        out = subprocess.run([sys.executable, script, str(path)], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
