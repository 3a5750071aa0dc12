"""Search outputs: policy JSON, history and Pareto CSV, plots and a short Markdown report.

Files written into a run's output folder:

* ``policy.json``: the best policy keyed by layer name, with its costs and accuracy;
* ``history.csv``: every evaluation (policy, costs, accuracy, reward), appended as they come;
* ``pareto.csv``: the non-dominated (accuracy, cost) evaluations;
* ``policy.png``: per-layer weight and activation bits as bars with each layer's cost share, as
  in HAQ's figures; ``pareto.png``; ``search.png``: reward and best cost over episodes;
* ``report.md``: a summary with the uniform baselines.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from haqsearch.problem import Evaluation, SearchProblem
from haqsim.budget import format_quantity
from haqsim.policy import Policy
from haqsim.workload import LayerKind

__all__ = [
    "HISTORY_FIELDS",
    "HistoryWriter",
    "pareto_front",
    "plot_pareto",
    "plot_policy",
    "plot_search",
    "policy_of",
    "read_history",
    "write_pareto",
    "write_report",
]

#: Numbers of an evaluation, stored at full precision.
_NUMBERS = (
    "accuracy",
    "reward",
    "latency_s",
    "energy_j",
    "size_bytes",
    "bitops",
    "cost",
    "cost_ratio",
)
HISTORY_FIELDS = ("episode", "source", *_NUMBERS, "limited", "seconds", "w_bits", "a_bits")


def _bits_str(bits: np.ndarray) -> str:
    return " ".join(str(int(b)) for b in bits)


def _history_row(ev: Evaluation) -> list[Any]:
    """One ``history.csv`` row; floats at full precision so a resumed run replays them exactly."""
    numbers = (getattr(ev, key) for key in _NUMBERS)
    return [
        ev.index,
        ev.source,
        *map(repr, numbers),
        int(ev.limited),
        f"{ev.seconds:.4f}",
        _bits_str(ev.w_bits),
        _bits_str(ev.a_bits),
    ]


class HistoryWriter:
    """Writes evaluations to ``history.csv`` as they arrive (a problem listener)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(HISTORY_FIELDS)
        self._file.flush()

    def __call__(self, ev: Evaluation) -> None:
        self._writer.writerow(_history_row(ev))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_history(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``history.csv`` with bits as ``int64`` arrays and numbers as floats."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out: dict[str, Any] = dict(row)
            for key in (*_NUMBERS, "seconds"):
                out[key] = float(row[key])
            out["episode"] = int(row["episode"])
            out["limited"] = bool(int(row["limited"]))
            out["w_bits"] = np.array([int(b) for b in row["w_bits"].split()], np.int64)
            out["a_bits"] = np.array([int(b) for b in row["a_bits"].split()], np.int64)
            rows.append(out)
    return rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points ``(cost, accuracy)``: lower cost, higher accuracy.

    Sorted by cost; among equal points the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best_acc = -math.inf
    for i in order:
        if points[i][1] > best_acc:
            front.append(i)
            best_acc = points[i][1]
    return front


def write_pareto(path: Path, front: Sequence[Evaluation]) -> None:
    """Write evaluations (the Pareto front from :func:`pareto_front`) in the history format."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HISTORY_FIELDS)
        writer.writerows(_history_row(ev) for ev in front)


def policy_of(problem: SearchProblem, ev: Evaluation, **meta: Any) -> Policy:
    """The evaluation as a :class:`haqsim.policy.Policy` with a summary of costs and accuracy."""
    t = problem.table
    rep = t.report(ev.w_bits, ev.a_bits)
    share = rep.cycles / max(rep.total_cycles, 1)
    summary = {
        "accuracy": ev.accuracy,
        "reference_accuracy": problem.reference_accuracy,
        "reward": ev.reward,
        "latency_s": ev.latency_s,
        "energy_j": ev.energy_j,
        "size_bytes": ev.size_bytes,
        "bitops": ev.bitops,
        "budget": str(problem.budget),
        "budget_limit": problem.enforcer.limit,
        "cost_ratio_to_8bit": ev.cost_ratio,
        "episode": ev.index,
        "searcher": ev.source,
    }
    layers_extra = {
        name: {
            "latency_share": float(share[i]),
            "bound": "memory" if rep.memory_bound[i] else "compute",
        }
        for i, name in enumerate(t.workload.names)
    }
    return Policy(
        t.workload.names,
        ev.w_bits,
        ev.a_bits,
        {
            "workload": t.workload.name,
            "hardware": t.hardware.name,
            "batch": t.batch,
            "summary": summary,
            "layer_costs": layers_extra,
            **meta,
        },
    )


# ------------------------------------------------------------------------------ plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_policy(path: Path, problem: SearchProblem, ev: Evaluation, title: str = "") -> None:
    """Per-layer bits (weights up, activations down) with each layer's latency share."""
    plt = _plt()
    wl = problem.table.workload
    rep = problem.table.report(ev.w_bits, ev.a_bits)
    L = len(wl)
    x = np.arange(L)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * L + 3), 4.2))
    dw = wl.kind == LayerKind.DEPTHWISE
    colors_w = np.where(dw, "#1f77b4", "#6baed6")
    colors_a = np.where(dw, "#d62728", "#fc9272")
    ax.bar(x, ev.w_bits, color=colors_w, label="weight bits (dark: depthwise)")
    ax.bar(x, -ev.a_bits, color=colors_a, label="activation bits (dark: depthwise)")
    for i in np.flatnonzero(rep.memory_bound):
        ax.plot(i, -ev.a_bits[i] - 0.6, marker="v", color="k", markersize=3)
    ax.axhline(0, color="k", linewidth=0.6)
    ax.set_ylabel("bits  (weights up, activations down)")
    ax.set_xlabel("layer (v: memory-bound)")
    ax.set_xticks(x[:: max(1, L // 25)])
    top = int(max(ev.w_bits.max(), ev.a_bits.max()))
    ax.set_ylim(-top - 1.5, top + 1.5)
    ax.set_yticks(range(-top, top + 1, 2), [str(abs(t)) for t in range(-top, top + 1, 2)])
    ax2 = ax.twinx()
    ax2.plot(
        x,
        100 * rep.cycles / max(rep.total_cycles, 1),
        color="#2ca02c",
        linewidth=1.2,
        label="latency share",
    )
    ax2.set_ylabel("share of latency (%)", color="#2ca02c")
    ax.set_title(
        title
        or f"{wl.name} on {problem.table.hardware.name}: accuracy "
        f"{ev.accuracy:.2%}, {problem.budget.metric} {ev.cost_ratio:.2f}x of 8-bit"
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(
    path: Path,
    problem: SearchProblem,
    history: Sequence[Evaluation],
    uniform: Sequence[tuple[int, float, float]] = (),
) -> None:
    """Accuracy vs cost ratio of every evaluation, the Pareto front and uniform policies.

    ``uniform`` holds ``(bits, cost_ratio, accuracy)`` points.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    costs = np.array([e.cost_ratio for e in history])
    accs = np.array([e.accuracy for e in history])
    ax.scatter(costs, 100 * accs, s=8, alpha=0.35, color="#7f7f7f", label="evaluated")
    front = pareto_front([(e.cost_ratio, e.accuracy) for e in history])
    ax.plot(
        costs[front], 100 * accs[front], "-o", color="#d62728", markersize=3, label="Pareto front"
    )
    if uniform:
        ub = np.array(uniform, dtype=float)
        ax.plot(ub[:, 1], 100 * ub[:, 2], "s--", color="#1f77b4", label="uniform w=a bits")
        for b, c, a in uniform:
            ax.annotate(
                f"{b}b", (c, 100 * a), fontsize=7, xytext=(3, -9), textcoords="offset points"
            )
    limit_ratio = problem.enforcer.limit / problem.enforcer.reference
    ax.axvline(limit_ratio, color="k", linestyle=":", label=f"budget {limit_ratio:.2f}x")
    ax.set_xlabel(f"{problem.budget.metric} relative to uniform 8-bit")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_search(path: Path, history: Sequence[Evaluation]) -> None:
    """Reward per episode with the best so far, and the cost ratio per episode."""
    plt = _plt()
    ep = np.arange(len(history))
    reward = np.array([e.reward for e in history])
    cost = np.array([e.cost_ratio for e in history])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax1.plot(ep, reward, ".", markersize=3, alpha=0.5, label="reward")
    ax1.plot(ep, np.maximum.accumulate(reward), color="#d62728", label="best so far")
    ax1.set_ylabel("reward")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.plot(ep, cost, ".", markersize=3, alpha=0.5, color="#2ca02c")
    best_idx = [int(np.argmax(reward[: i + 1])) for i in range(len(reward))]
    ax2.plot(ep, cost[best_idx], color="#d62728", label="best policy's cost")
    ax2.set_ylabel("cost / 8-bit cost")
    ax2.set_xlabel("episode (evaluation)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    path: Path,
    problem: SearchProblem,
    best: Evaluation,
    *,
    searcher: str,
    episodes: int,
    seed: int,
    seconds: float,
    uniform: Sequence[tuple[int, float, float]] = (),
    model: str = "",
) -> None:
    """A short Markdown report of the run."""
    t = problem.table
    metric = problem.budget.metric
    lines = [
        f"# Mixed-precision search: {model or t.workload.name} on {t.hardware.name}",
        "",
        f"- searcher `{searcher}`, {episodes} episodes, seed {seed}, {seconds:.1f} s "
        f"({problem.oracle_calls} accuracy evaluations, {problem.oracle_seconds:.1f} s in the "
        "oracle)",
        f"- budget `{problem.budget}`: {format_quantity(metric, problem.enforcer.limit)} "
        f"(uniform 8-bit: {format_quantity(metric, problem.enforcer.reference)})",
        f"- reference accuracy {problem.reference_accuracy:.2%}",
        "",
        "| policy | accuracy | latency | energy | size | " + f"{metric} / 8-bit |",
        "|---|---|---|---|---|---|",
        f"| **found** (episode {best.index}) | **{best.accuracy:.2%}** | "
        f"{format_quantity('latency', best.latency_s)} | "
        f"{format_quantity('energy', best.energy_j)} | "
        f"{format_quantity('size', best.size_bytes)} | {best.cost_ratio:.3f} |",
    ]
    for bits, ratio, acc in uniform:
        w = np.full(t.n_layers, bits)
        costs = t.evaluate(w, w)
        fits = "" if ratio <= problem.enforcer.limit / problem.enforcer.reference else " (over)"
        lines.append(
            f"| uniform {bits}-bit{fits} | {acc:.2%} | "
            f"{format_quantity('latency', float(costs.latency_s[0]))} | "
            f"{format_quantity('energy', float(costs.energy_j[0]))} | "
            f"{format_quantity('size', float(costs.size_bytes[0]))} | {ratio:.3f} |"
        )
    lines += [
        "",
        "![policy](policy.png)",
        "",
        "![pareto](pareto.png)",
        "",
        "![search](search.png)",
        "",
        "Files: `policy.json` (best policy by layer name), `history.csv` (every episode), "
        "`pareto.csv` (non-dominated accuracy vs cost).",
    ]
    path.write_text("\n".join(lines) + "\n")
