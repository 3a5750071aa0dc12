"""``haqsearch.search``: the whole search in one call, as ``haq search`` runs it.

A model (built-in name, ``module:factory`` or an ``nn.Module``) and its data give a
:class:`~haqsearch.accuracy.TorchAccuracyOracle`; its traced layers (or a workload of the same
length, e.g. the full-size ImageNet network from :mod:`haqsim.zoo`) on the hardware give the cost
table; a searcher proposes policies to the :class:`~haqsearch.problem.SearchProblem` for
``episodes`` evaluations. Results are written as they improve, so an interrupted run keeps its
best policy, and ``resume=True`` continues it (see :mod:`haqsearch.problem`).

Scale-out: ``workers=N`` measures accuracies on ``N`` oracle replicas in local processes, and
``ray=True`` (or ``ray_address=...``) on Ray actors (see :mod:`haqsearch.parallel`). Random search,
greedy and the uniform baselines give the same results as with one worker; evolution proposes
``N`` children per round and the RL agents play ``N`` environments at once, so their runs differ
from one-worker runs (see their docstrings). Workers run torch on one thread each; their
accuracies equal a one-worker run's exactly when that run also uses one torch thread (with
another thread count torch rounds differently and the fine-tune amplifies it; see
:mod:`haqsearch.parallel`).
"""

from __future__ import annotations

import importlib
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.errors import HaqsearchError
from haqsearch.models.digits import BUILTIN_MODELS, load_builtin
from haqsearch.parallel import (
    OracleFactory,
    OracleReplica,
    TorchOracleSpec,
    make_pool,
    require_ray,
)
from haqsearch.problem import Evaluation, SearchProblem
from haqsearch.report import (
    HistoryWriter,
    pareto_front,
    plot_pareto,
    plot_policy,
    plot_search,
    policy_of,
    read_history,
    write_pareto,
    write_report,
)
from haqsearch.searchers import get_searcher
from haqsim.budget import Budget
from haqsim.cost import CostTable
from haqsim.hardware import Hardware, preset
from haqsim.oracle import AccuracyOracle
from haqsim.policy import Policy
from haqsim.workload import LayerTable

__all__ = ["SearchResult", "load_model", "parse_pin", "search", "uniform_baselines"]

DEFAULT_MODEL = "digits_mobilenet"
DEFAULT_HARDWARE = "bismo-edge"
DEFAULT_BUDGET = "latency=0.45x"
DEFAULT_EPISODES = 200


@attrs.frozen(eq=False)
class SearchResult:
    """What a search found.

    Attributes:
        best: The best evaluation (highest reward; ties: lower cost).
        policy: It as a :class:`haqsim.Policy` keyed by layer name, with its summary.
        history: Every evaluation, in order.
        pareto: The non-dominated (cost, accuracy) evaluations.
        uniform: ``(bits, cost_ratio, accuracy)`` of the uniform policies within the ranges.
        problem: The search problem (table, budget, oracle).
        out: Output folder, if any.
        seconds: Wall time of the search.
    """

    best: Evaluation
    policy: Policy
    history: list[Evaluation]
    pareto: list[Evaluation]
    uniform: list[tuple[int, float, float]]
    problem: SearchProblem
    out: Path | None
    seconds: float

    @property
    def best_uniform(self) -> tuple[int, float, float] | None:
        """The highest-accuracy uniform policy that fits the budget, if any."""
        limit = self.problem.enforcer.limit / self.problem.enforcer.reference
        fitting = [u for u in self.uniform if u[1] <= limit]
        return max(fitting, key=lambda u: u[2]) if fitting else None


def _import(spec: str, what: str) -> Any:
    if ":" not in spec:
        raise HaqsearchError(f"{what} must be a built-in name or 'module:attribute', got {spec!r}")
    module, attr = spec.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise HaqsearchError(f"{what} {spec!r} could not be imported: {exc}") from None


def load_model(
    model: str | nn.Module,
    weights: str | Path | None = None,
    data: str | tuple[Any, Any] | None = None,
) -> tuple[nn.Module, Any, Any, str]:
    """``(model, train_data, val_data, name)`` for a built-in name, ``module:factory`` or module.

    Built-in models come trained with their data. Others need ``data``: a ``(train, val)`` pair
    of batch iterables, or ``"module:function"`` returning one; ``weights`` is a state-dict file.
    """
    if isinstance(model, str) and model in BUILTIN_MODELS:
        pre = load_builtin(model, verbose=True)
        net, train, val, name = pre.model, pre.train_data, pre.val_data, model
    elif isinstance(model, str):
        factory = _import(model, "model")
        net = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(net, nn.Module):
            raise HaqsearchError(f"model {model!r} must give a torch.nn.Module, got {type(net)}")
        train = val = None
        name = model.split(":", 1)[1]
    elif isinstance(model, nn.Module):
        net, train, val, name = model, None, None, type(model).__name__
    else:
        raise HaqsearchError(
            f"model must be a built-in name ({', '.join(sorted(BUILTIN_MODELS))}), "
            f"'module:factory' or an nn.Module, got {model!r}"
        )
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (OSError, RuntimeError, KeyError) as exc:
            raise HaqsearchError(f"weights {str(weights)!r} could not be loaded: {exc}") from None
    if data is not None:
        pair = _import(data, "data")() if isinstance(data, str) else data
        try:
            train, val = pair
        except (TypeError, ValueError):
            raise HaqsearchError(
                f"data must be a (train, val) pair of batch iterables, got {type(pair).__name__}"
            ) from None
    if train is None or val is None:
        raise HaqsearchError(
            f"model {name!r} needs data: pass data=(train, val) or --data module:function"
        )
    return net.eval(), train, val, name


def parse_pin(pin: str | dict[int, tuple[int, int]] | None, max_bits: int) -> dict | None:
    """``"first,last"`` (or ``"0,-1"``, ``"none"``) -> ``{layer: (max_bits, max_bits)}``."""
    if pin is None or isinstance(pin, dict):
        return pin
    out: dict[int, tuple[int, int]] = {}
    for part in (p.strip() for p in pin.split(",")):
        if part in ("", "none"):
            continue
        if part == "first":
            key = 0
        elif part == "last":
            key = -1
        else:
            try:
                key = int(part)
            except ValueError:
                raise HaqsearchError(
                    f"pin entries must be 'first', 'last' or layer indices, got {part!r}"
                ) from None
        out[key] = (max_bits, max_bits)
    return out


def uniform_baselines(problem: SearchProblem) -> list[tuple[int, float, float]]:
    """``(bits, cost_ratio, accuracy)`` of each uniform policy ``w = a = bits`` (pins kept)."""
    top = int(max(problem.w_hi.max(), problem.a_hi.max()))
    bottom = int(min(problem.w_lo.min(), problem.a_lo.min()))
    levels = list(range(top, bottom - 1, -1))
    full = [np.full(problem.n_layers, bits) for bits in levels]
    policies = [problem.clip(f, f) for f in full]
    measured = problem.accuracy_many(policies)
    return [
        (bits, problem.cost_ratio(w, a), acc)
        for bits, (w, a), (acc, _) in zip(levels, policies, measured, strict=True)
    ]


def _oracle_factory(
    model: str | nn.Module,
    weights: str | Path | None,
    data: str | tuple[Any, Any] | None,
    oracle: AccuracyOracle,
    given: bool,
    **spec: Any,
) -> OracleFactory:
    """How workers build their replica: by name when the model and data have names (nothing
    large is shipped), else a pickled copy of the parent's oracle."""
    if not given and isinstance(model, str) and (data is None or isinstance(data, str)):
        return TorchOracleSpec(model, None if weights is None else str(weights), data, **spec)
    return OracleReplica(oracle)


def _config(**kw: Any) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, int | float | str | bool | type(None)) else str(v))
        for k, v in kw.items()
    }


def search(
    model: str | nn.Module = DEFAULT_MODEL,
    *,
    hardware: Hardware | str = DEFAULT_HARDWARE,
    budget: Budget | str = DEFAULT_BUDGET,
    searcher: str = "ddpg",
    episodes: int = DEFAULT_EPISODES,
    bits: tuple[int, int] = (2, 8),
    pin: str | dict[int, tuple[int, int]] | None = "first,last",
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    weights: str | Path | None = None,
    data: str | tuple[Any, Any] | None = None,
    workload: LayerTable | None = None,
    batch: int | None = None,
    oracle: AccuracyOracle | None = None,
    finetune_steps: int = 20,
    finetune_lr: float = 1e-2,
    eval_batches: int | None = None,
    enforcement: str = "limit",
    reward_scale: float = 0.1,
    searcher_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    workers: int = 1,
    ray: bool = False,
    ray_address: str | None = None,
) -> SearchResult:
    """Search a mixed-precision policy for ``model`` on ``hardware`` under ``budget``.

    Args:
        model: Built-in name (``digits_mobilenet``, ``digits_cnn``), ``"module:factory"`` or an
            ``nn.Module``.
        hardware: Preset name, config, or ``.toml``/``.json`` file.
        budget: ``"latency=0.5x"``, ``"energy=2mJ"``, ``"size=1MB"``, ``"bitops=..."``.
        searcher: ``ddpg``, ``random``, ``evolution``, ``greedy``, ``uniform`` or ``sb3:ALGO``.
        episodes: Evaluations the searcher may spend.
        bits: ``(min_bits, max_bits)`` for every free layer.
        pin: Layers fixed at ``max_bits``: ``"first,last"`` (HAQ keeps the first layer and the
            classifier at 8 bits), indices, ``"none"``, or ``{layer: (w, a)}``.
        seed: Seed of the searcher (and of the oracle's fine-tune).
        out: Output folder (policy.json, history.csv, pareto.csv, plots, report.md).
        resume: Continue the run in ``out`` (same settings; earlier evaluations are replayed
            from its history without re-measuring).
        weights, data: For models that are not built in (see :func:`load_model`).
        workload: Price a workload other than the traced model (same number of layers), e.g. the
            full-size ImageNet network while accuracy comes from a small model.
        batch: Images per inference (default: the hardware preset's).
        oracle: Use this accuracy oracle instead of building a ``TorchAccuracyOracle``.
        finetune_steps, finetune_lr, eval_batches: The oracle's short fine-tune and evaluation.
        enforcement: ``"limit"`` (HAQ) or ``"project"``.
        reward_scale: HAQ's lambda.
        searcher_kwargs: Extra arguments of the searcher.
        progress: Show a progress bar.
        on_evaluation: Called with every evaluation.
        workers: Oracle replicas measuring accuracies at once (local processes, or Ray actors
            with ``ray``); 1 measures in this process. Each replica uses one thread.
        ray: Measure on Ray actors (a local Ray instance unless ``ray_address`` is given);
            needs the optional dependency ray (``pip install 'haqsim[ray]'``).
        ray_address: Address of a Ray cluster (``"auto"``, ``"ray://head:10001"``); implies
            ``ray``.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise HaqsearchError(f"episodes must be a positive integer, got {episodes!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise HaqsearchError(f"workers must be a positive integer, got {workers!r}")
    use_ray = ray or ray_address is not None
    if use_ray:
        require_ray()  # fail before any model is loaded
    lo, hi = bits
    hw = preset(hardware)
    budget = Budget.coerce(budget)
    searcher_obj = get_searcher(searcher, **(searcher_kwargs or {}))
    model_name = model if isinstance(model, str) else type(model).__name__
    oracle_given = oracle is not None
    if oracle is None:
        net, train, val, model_name = load_model(model, weights, data)
        oracle = TorchAccuracyOracle(
            net, train, val, finetune_steps, eval_batches, lr=finetune_lr, seed=seed
        )
        traced = oracle.workload
    else:
        traced = getattr(oracle, "workload", None)
    wl = workload if workload is not None else traced
    if wl is None:
        raise HaqsearchError("a workload is needed when the oracle has none (pass workload=...)")
    if traced is not None and len(traced) != len(wl):
        raise HaqsearchError(
            f"workload {wl.name!r} must have one layer per quantizable layer of the model "
            f"({len(traced)}), got {len(wl)}"
        )
    table = CostTable.build(wl, hw, batch=batch, max_bits=max(hi, min(8, hw.max_bits)))
    problem = SearchProblem(
        table,
        budget,
        oracle,
        min_bits=lo,
        max_bits=hi,
        pin=parse_pin(pin, hi),
        reward_scale=reward_scale,
        enforcement=enforcement,
    )

    config = _config(
        model=model_name,
        hardware=hw.name,
        budget=str(problem.budget),
        searcher=searcher,
        bits=f"{lo}..{hi}",
        pin=str(pin),
        seed=seed,
        workload=wl.name,
        batch=table.batch,
        enforcement=enforcement,
        finetune_steps=finetune_steps,
        reward_scale=reward_scale,
    )
    out_dir = Path(out) if out is not None else None
    writer = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_file = out_dir / "run.json"
        if resume:
            if not run_file.exists():
                raise HaqsearchError(f"--resume needs an earlier run in {str(out_dir)!r}")
            earlier = json.loads(run_file.read_text())["config"]
            diff = {k: (earlier.get(k), v) for k, v in config.items() if earlier.get(k) != v}
            if diff:
                raise HaqsearchError(
                    f"--resume must use the earlier run's settings; differ: {diff}"
                )
            history_file = out_dir / "history.csv"
            if history_file.exists():
                rows = read_history(history_file)
                problem.preload([(r["w_bits"], r["a_bits"], r["accuracy"]) for r in rows])
        run_file.write_text(json.dumps({"config": config, "episodes": episodes}, indent=1))
        writer = HistoryWriter(out_dir / "history.csv")
        problem.listeners.append(writer)

        def save_best(ev: Evaluation) -> None:
            if problem.best is ev:
                policy_of(problem, ev, model=model_name).to_json(out_dir / "policy.json")

        problem.listeners.append(save_best)
    if on_evaluation is not None:
        problem.listeners.append(on_evaluation)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, desc=f"{searcher} on {hw.name}", unit="ep", dynamic_ncols=True)

        def tick(ev: Evaluation) -> None:
            b = problem.best
            bar.set_postfix(
                best_reward=f"{b.reward:+.4f}",
                best_acc=f"{b.accuracy:.2%}",
                cost=f"{b.cost_ratio:.3f}x",
                refresh=False,
            )
            bar.update(1)

        problem.listeners.append(tick)

    if workers > 1 or use_ray:
        factory = _oracle_factory(
            model,
            weights,
            data,
            oracle,
            oracle_given,
            finetune_steps=finetune_steps,
            eval_batches=eval_batches,
            lr=finetune_lr,
            seed=seed,
        )
        problem.pool = make_pool(factory, workers, ray=use_ray, ray_address=ray_address)
        refs = problem.pool.reference_accuracies
        if any(abs(r - problem.reference_accuracy) > 1e-9 for r in refs):
            warnings.warn(
                f"oracle replicas' reference accuracies {refs} differ from this process's "
                f"{problem.reference_accuracy}: replicas differ in model, data, device or torch "
                f"thread count",
                stacklevel=2,
            )

    start = time.perf_counter()
    failed = True
    try:
        searcher_obj.run(problem, episodes, seed)
        seconds = time.perf_counter() - start
        if problem.best is None:
            raise HaqsearchError(
                f"searcher {searcher!r} evaluated no policy in {episodes} episodes"
            )
        uniform = uniform_baselines(problem)
        failed = False
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if problem.pool is not None:
            problem.pool.close(terminate=failed)
    best = problem.best
    policy = policy_of(problem, best, model=model_name)
    pareto = [
        problem.history[i] for i in pareto_front([(e.cost, e.accuracy) for e in problem.history])
    ]
    if out_dir is not None:
        write_pareto(out_dir / "pareto.csv", pareto)
        policy.to_json(out_dir / "policy.json")
        plot_policy(out_dir / "policy.png", problem, best)
        plot_pareto(out_dir / "pareto.png", problem, problem.history, uniform)
        plot_search(out_dir / "search.png", problem.history)
        write_report(
            out_dir / "report.md",
            problem,
            best,
            searcher=searcher,
            episodes=episodes,
            seed=seed,
            seconds=seconds,
            uniform=uniform,
            model=model_name,
        )
    return SearchResult(
        best, policy, list(problem.history), pareto, uniform, problem, out_dir, seconds
    )
