"""End-to-end tests of ``haq`` (as a user runs it: a subprocess, the real digits model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def haq(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "haqsearch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=timeout,
    )


@pytest.mark.slow
def test_default_search_then_evaluate_and_compare(tmp_path):
    out = tmp_path / "run"
    res = haq("search", "--episodes", "6", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "best policy (episode" in res.stdout and str(out) in res.stdout
    policy = json.loads((out / "policy.json").read_text())
    assert policy["model"] == "digits_mobilenet" and policy["hardware"] == "bismo-edge"
    assert policy["summary"]["cost_ratio_to_8bit"] <= 0.45 + 1e-9
    assert len(policy["layers"]) == 17
    assert (out / "history.csv").read_text().count("\n") == 1 + 6
    for name in ("pareto.csv", "policy.png", "pareto.png", "search.png", "report.md"):
        assert (out / name).stat().st_size > 0

    res = haq("evaluate", str(out / "policy.json"))
    assert res.returncode == 0, res.stderr
    assert f"accuracy   {policy['summary']['accuracy']:.2%}" in res.stdout

    res = haq("compare", str(out / "policy.json"), "--uniform", "8", "4")
    assert res.returncode == 0, res.stderr
    assert "uniform 8-bit" in res.stdout and "uniform 4-bit" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--budget", "latency=0.001x", "--episodes", "1"],
         "must be >= the all-min-bits cost"),
        (["search", "--searcher", "annealing"], "valid searchers are"),
        (["search", "--hardware", "gpu"], "valid hardware presets are"),
        (["search", "--hardware", "missing.toml"],
         "hardware file 'missing.toml' does not exist; valid hardware presets are: bismo-cloud"),
        (["search", "--budget", "energy=3ms"], "energy"),
        (["search", "--model", "nosuchmodule:factory"], "could not be imported"),
        (["evaluate", "/nonexistent/policy.json"], "must be readable JSON"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(args, message):
    res = haq(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
