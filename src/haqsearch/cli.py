"""``haq``: hardware-aware mixed-precision search from the command line.

haq search                                   # built-in default: digits MobileNet, bismo-edge
haq search --model digits_cnn --hardware bitfusion --budget energy=0.6x --searcher evolution
haq search --model mypkg.nets:build --weights w.pt --data mypkg.data:loaders --budget size=1MB
haq search --out runs/a --resume --episodes 300   # continue an interrupted or finished run
haq search --workers 4 --searcher evolution   # measure 4 policies at once in 4 processes
haq search --ray-address auto --workers 16    # ... on 16 Ray actors of a running cluster
haq evaluate runs/a/policy.json               # re-measure a saved policy
haq compare runs/a/policy.json runs/b/policy.json   # side by side with uniform 8/6/5/4-bit
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.errors import HaqsearchError
from haqsearch.search import (
    DEFAULT_BUDGET,
    DEFAULT_EPISODES,
    DEFAULT_HARDWARE,
    DEFAULT_MODEL,
    load_model,
    search,
)
from haqsearch.searchers import searcher_names
from haqsim.budget import format_quantity
from haqsim.cost import CostTable
from haqsim.errors import HaqsimError
from haqsim.hardware import preset
from haqsim.policy import Policy

__all__ = ["main"]


def _bits_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(".."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bits must look like 2..8, got {text!r}") from None
    return lo, hi


def _cmd_search(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path("runs") / time.strftime("haq-%Y%m%d-%H%M%S")
    result = search(
        args.model,
        hardware=args.hardware,
        budget=args.budget,
        searcher=args.searcher,
        episodes=args.episodes,
        bits=args.bits,
        pin=args.pin,
        seed=args.seed,
        out=out,
        resume=args.resume,
        weights=args.weights,
        data=args.data,
        finetune_steps=args.finetune_steps,
        progress=not args.quiet,
        workers=args.workers,
        ray=args.ray,
        ray_address=args.ray_address,
    )
    best = result.best
    print(
        f"best policy (episode {best.index}): accuracy {best.accuracy:.2%} "
        f"(reference {result.problem.reference_accuracy:.2%}), "
        f"{result.problem.budget.metric} {best.cost_ratio:.3f}x of 8-bit "
        f"(budget {result.problem.budget})"
    )
    uni = result.best_uniform
    if uni is not None:
        print(
            f"best uniform policy within budget: {uni[0]}-bit, accuracy {uni[2]:.2%}, "
            f"{uni[1]:.3f}x of 8-bit"
        )
    print(
        f"results in {out}/: policy.json history.csv pareto.csv policy.png pareto.png "
        f"search.png report.md ({result.seconds:.0f} s)"
    )
    return 0


def _oracle_for(policy: Policy, args: argparse.Namespace) -> tuple[TorchAccuracyOracle, str]:
    model = args.model or policy.meta.get("model") or DEFAULT_MODEL
    net, train, val, name = load_model(model, args.weights, args.data)
    oracle = TorchAccuracyOracle(net, train, val, args.finetune_steps, lr=1e-2, seed=args.seed)
    return oracle, name


def _measure(policy_path: str, args: argparse.Namespace) -> dict:
    raw = Policy.from_json(policy_path)
    oracle, name = _oracle_for(raw, args)
    wl = oracle.workload
    policy = Policy.from_json(policy_path, wl)
    hw = preset(args.hardware or raw.meta.get("hardware") or DEFAULT_HARDWARE)
    table = CostTable.build(wl, hw)
    rep = table.report(policy.w_bits, policy.a_bits)
    acc = oracle(policy.w_bits, policy.a_bits)
    return {
        "name": Path(policy_path).parent.name or policy_path,
        "accuracy": acc,
        "reference": oracle.reference_accuracy,
        "report": rep,
        "table": table,
        "oracle": oracle,
        "model": name,
    }


def _cmd_evaluate(args: argparse.Namespace) -> int:
    m = _measure(args.policy, args)
    rep = m["report"]
    t = rep.totals()
    print(f"{args.policy}: model {m['model']} on {rep.hardware.name} (batch {rep.batch})")
    print(f"  accuracy   {m['accuracy']:.2%} (float reference {m['reference']:.2%})")
    print(f"  latency    {format_quantity('latency', t['latency_s'])}")
    print(f"  energy     {format_quantity('energy', t['energy_j'])}")
    print(f"  size       {format_quantity('size', t['size_bytes'])}")
    print(f"  BitOps     {t['bitops']:.4g} per image")
    u8 = m["table"].uniform(8)
    print(
        f"  vs uniform 8-bit: latency {t['latency_s'] / float(u8.latency_s[0]):.3f}x, "
        f"energy {t['energy_j'] / float(u8.energy_j[0]):.3f}x, "
        f"size {t['size_bytes'] / float(u8.size_bytes[0]):.3f}x"
    )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    rows = []
    first = None
    for path in args.policies:
        m = _measure(path, args)
        first = first or m
        rep = m["report"]
        rows.append(
            (
                m["name"],
                m["accuracy"],
                rep.total_latency_s,
                rep.total_energy_j,
                rep.total_size_bytes,
            )
        )
    if first is None:
        raise HaqsearchError("compare needs at least one policy file")
    oracle, table = first["oracle"], first["table"]
    for bits in args.uniform:
        full = np.full(table.n_layers, bits)
        c = table.evaluate(full, full)
        rows.append(
            (
                f"uniform {bits}-bit",
                oracle(full, full),
                float(c.latency_s[0]),
                float(c.energy_j[0]),
                float(c.size_bytes[0]),
            )
        )
    ref = table.uniform(8)
    print(
        f"model {first['model']} on {table.hardware.name}; float accuracy "
        f"{oracle.reference_accuracy:.2%}"
    )
    print(
        f"{'policy':<24} {'accuracy':>9} {'latency':>11} {'x8b':>6} {'energy':>11} {'x8b':>6} "
        f"{'size':>10} {'x8b':>6}"
    )
    for name, acc, lat, en, size in rows:
        print(
            f"{name[:24]:<24} {acc:>9.2%} {format_quantity('latency', lat):>11} "
            f"{lat / float(ref.latency_s[0]):>6.3f} {format_quantity('energy', en):>11} "
            f"{en / float(ref.energy_j[0]):>6.3f} {format_quantity('size', size):>10} "
            f"{size / float(ref.size_bytes[0]):>6.3f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haq", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="search a mixed-precision policy under a hardware budget")
    s.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="built-in (digits_mobilenet, digits_cnn) or module:factory",
    )
    s.add_argument("--weights", help="state-dict file for a module:factory model")
    s.add_argument("--data", help="module:function returning (train, val) batch iterables")
    s.add_argument("--hardware", default=DEFAULT_HARDWARE, help="preset name or .toml/.json")
    s.add_argument(
        "--budget",
        default=DEFAULT_BUDGET,
        help="latency=0.5x | energy=2mJ | size=1.5MB | bitops=...",
    )
    s.add_argument(
        "--searcher",
        default="ddpg",
        help=f"{', '.join(searcher_names())} or sb3:ALGO (TD3, PPO, SAC)",
    )
    s.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help="accuracy evaluations")
    s.add_argument("--bits", type=_bits_range, default=(2, 8), help="bit range, e.g. 2..8")
    s.add_argument("--pin", default="first,last", help="layers kept at max bits (or 'none')")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--finetune-steps", type=int, default=20, help="fine-tune steps per episode")
    s.add_argument("--out", help="output folder (default runs/haq-TIMESTAMP)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="accuracy evaluations at once, one model replica each (processes or Ray actors)",
    )
    s.add_argument("--ray", action="store_true", help="evaluate on Ray actors (pip install ray)")
    s.add_argument("--ray-address", help="Ray cluster address (implies --ray), e.g. auto")
    s.set_defaults(func=_cmd_search)

    for name, helptext in (
        ("evaluate", "re-measure a saved policy"),
        ("compare", "compare policies with uniform ones"),
    ):
        c = sub.add_parser(name, help=helptext)
        if name == "evaluate":
            c.add_argument("policy", help="policy.json")
        else:
            c.add_argument("policies", nargs="+", help="policy.json files")
            c.add_argument("--uniform", type=int, nargs="*", default=[8, 6, 5, 4])
        c.add_argument("--model", help="model (default: the one recorded in the policy)")
        c.add_argument("--weights")
        c.add_argument("--data")
        c.add_argument("--hardware", help="hardware (default: the policy's)")
        c.add_argument("--finetune-steps", type=int, default=20)
        c.add_argument("--seed", type=int, default=0)
        c.set_defaults(func=_cmd_evaluate if name == "evaluate" else _cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (HaqsimError, HaqsearchError) as exc:
        print(f"haq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("haq: interrupted; the best policy so far is in the output folder", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
