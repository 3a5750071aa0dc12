"""benchmarks/reproduce_haq.py: sequence-matched digits MobileNets, the script's smallest path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from haqsearch import trace
from haqsearch.models.digits import (
    BUILTIN_MODELS,
    digits_mobilenet_v1_seq,
    digits_mobilenet_v2_seq,
    model_cache_dir,
)
from haqsim import zoo
from haqsim.workload import LayerKind

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_haq.py"


def _script():
    if "reproduce_haq" in sys.modules:
        return sys.modules["reproduce_haq"]
    spec = importlib.util.spec_from_file_location("reproduce_haq", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_haq"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("factory", "full", "n_layers"),
    [
        (digits_mobilenet_v1_seq, zoo.mobilenet_v1, 28),
        (digits_mobilenet_v2_seq, zoo.mobilenet_v2, 53),
    ],
)
def test_digits_mobilenet_has_the_zoo_layer_sequence(factory, full, n_layers):
    torch.manual_seed(0)
    traced = trace(factory(), torch.zeros(1, 1, 32, 32)).workload
    ref = full()
    assert len(traced) == len(ref) == n_layers
    kinds = [LayerKind(k).name for k in traced.kind]
    assert kinds == [LayerKind(k).name for k in ref.kind]
    assert traced.names == ref.names
    assert list(traced.kh) == list(ref.kh)
    assert list(traced.stride) == list(ref.stride)
    assert traced.reads_image[0] and not traced.reads_image[1:].any()
    assert int(traced.cin[0]) == 1  # grey digits; the sizes differ on purpose
    assert _script().sequence_mismatches(traced, ref) == []


def test_sequence_mismatches_reports_a_difference():
    r = _script()
    v1, v2 = zoo.mobilenet_v1(), zoo.mobilenet_v2()
    assert r.sequence_mismatches(v1, v2) == ["28 traced layers vs 53 in mobilenet_v2"]
    assert r.sequence_mismatches(v1, v1) == []


def test_seq_models_are_registered_builtins():
    for name in ("digits_mobilenet_v1_seq", "digits_mobilenet_v2_seq"):
        spec = BUILTIN_MODELS[name]
        assert spec.input_shape == (1, 32, 32)
        assert spec.cache_key().startswith(name + "-")
    assert {"digits_cnn", "digits_mobilenet"} <= set(BUILTIN_MODELS)


def _tiny(out: Path, **kw):
    r = _script()
    args = dict(
        quick=True,
        out=str(out),
        oracle="proxy",
        levels=(4,),
        ddpg_episodes=2,
        ddpg_warmup=1,
        greedy_probes=2,
        greedy_refine=0,
        ddpg_cells=("v1",),
    )
    args.update(kw)
    return r.resolve(r.Args(**args))


def _tables(out: Path) -> dict[str, str]:
    names = ("cells.csv", "uniform.csv", "specialisation.csv", "layers.csv", "marginal.csv")
    return {n: (out / n).read_text() for n in names}


@pytest.mark.slow
def test_smallest_path_writes_the_report_and_is_repeatable(tmp_path):
    r = _script()
    lines: list[str] = []
    r.run(_tiny(tmp_path / "a"), log=lines.append)
    out = tmp_path / "a"
    report = (out / "report.md").read_text()
    for heading in (
        "## How accuracy and cost are measured here",
        "## 1. Latency-constrained search",
        "## 2. Energy-constrained search",
        "## 3. Specialisation",
        "## 4. Where the bits go",
        "## 5. Model-size-constrained search",
        "## Timing",
    ):
        assert heading in report
    assert "Wall time" in report and "--resume" not in report
    for png in ("bits_v1_ddpg.png", "bits_v2_greedy.png", "tradeoff_latency.png"):
        assert (out / png).stat().st_size > 1000
    assert lines[-1].startswith("Wall time")

    cells = (out / "cells.csv").read_text().splitlines()
    # v1 (ddpg + greedy) and v2 (greedy): exp1 2 hw, exp2 1, exp3 bitfusion latency 1, exp5 1
    assert len(cells) - 1 == 3 * (2 + 1 + 1 + 1)
    header = cells[0].split(",")
    for row in cells[1:]:
        rec = dict(zip(header, row.split(","), strict=True))
        # every searched policy fits its budget (the uniform policy's own cost)
        assert float(rec["ratio_to_8bit"]) <= float(rec["uniform_ratio_to_8bit"]) + 1e-9

    r.run(_tiny(tmp_path / "b"), log=lambda _: None)
    assert _tables(tmp_path / "a") == _tables(tmp_path / "b")

    # a resumed run takes every finished cell from the checkpoint and writes the same tables
    lines.clear()
    results = r.run(_tiny(tmp_path / "c", resume=True), log=lines.append)
    assert any(line.startswith("resuming: 15 finished cells") for line in lines)
    assert not any(line.startswith("  MobileNet") for line in lines)  # nothing searched again
    assert len(results["exp1"]) == 6
    assert _tables(tmp_path / "a") == _tables(tmp_path / "c")
    # ... and its wall time counts the searches the checkpoint saved, not only its own seconds
    resumed = results["resumed"]
    assert resumed["cells"] == resumed["of_cells"] == 15 and resumed["seconds"] > 0
    assert "read 15 of its 15 cells back from a `--resume` checkpoint" in lines[-1]
    assert "read 15 of its 15 cells back" in (tmp_path / "c" / "report.md").read_text()


def test_ddpg_cells_select_model_metric_and_level():
    r = _script()
    args = r.resolve(r.Args(ddpg_cells=("v1/latency", "v2/size/4")))
    assert r.ddpg_runs(args, "v1", "latency", 6)
    assert not r.ddpg_runs(args, "v1", "size", 4)
    assert r.ddpg_runs(args, "v2", "size", 4)
    assert not r.ddpg_runs(args, "v2", "size", 5)
    assert r.ddpg_scope_text(r.Args(ddpg_cells=("v2/latency/4",))) == (
        "on MobileNet-V2 latency at the uniform 4-bit budget"
    )
    with pytest.raises(SystemExit):
        r.resolve(r.Args(ddpg_cells=("v1/speed",)))


def test_quick_applies_only_to_fields_left_at_default():
    r = _script()
    args = r.parse_args(["--quick", "--ddpg-episodes", "9", "--levels", "4", "6"])
    assert args.ddpg_episodes == 9
    assert args.finetune_steps == r.QUICK["finetune_steps"]
    assert args.levels == (4, 6)
    full = r.parse_args([])
    assert full.ddpg_episodes == r.Args().ddpg_episodes
    with pytest.raises(SystemExit):
        r.parse_args(["--models", "v3"])


@pytest.mark.slow
def test_torch_oracle_path(tmp_path, monkeypatch):
    """The real accuracy path (TorchAccuracyOracle on the digits MobileNet-V1), one experiment.

    Untrained weights are put in a private model cache first, so nothing is trained here: this
    checks the wiring (sequence check, oracle, costs from the full-size workload), not accuracy.
    """
    r = _script()
    monkeypatch.setenv("HAQSIM_CACHE_DIR", str(tmp_path / "cache"))
    spec = BUILTIN_MODELS["digits_mobilenet_v1_seq"]
    cache = model_cache_dir()
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(spec.factory().state_dict(), cache / f"{spec.cache_key()}.pt")
    args = _tiny(
        tmp_path / "out",
        oracle="torch",
        models=("v1",),
        experiments=(1,),
        searchers=("greedy",),
        greedy_probes=1,
        finetune_steps=0,
    )
    lines: list[str] = []
    results = r.run(args, log=lines.append)
    cells = results["exp1"]
    assert [c.hardware for c in cells] == ["bismo-edge", "bismo-cloud"]
    for c in cells:
        assert 0.0 <= c.accuracy <= 1.0
        assert c.ratio <= c.uniform_ratio + 1e-9
        assert len(c.w_bits) == 28 and c.w_bits[0] == c.w_bits[-1] == 8
    assert any("digits_mobilenet_v1_seq" in line for line in lines)
    assert "top-1 on the held-out split" in (tmp_path / "out" / "report.md").read_text()
