"""Accuracy oracle cost and quantized accuracy of the built-in digits models.

For each built-in model (``digits_cnn``, ``digits_mobilenet``), prints:

* the float model's top-1 accuracy on the held-out split, and the training time if it was trained
  now (it is cached under ``$HAQSIM_CACHE_DIR`` or ``~/.cache/haqsim/models`` afterwards);
* the accuracy returned by :class:`haqsearch.accuracy.TorchAccuracyOracle` at uniform 8, 6, 5,
  4, 3 and 2 bits (weights and activations), with and without the short fine-tune;
* the seconds per oracle call (cache misses), split into calibration, fine-tune and evaluation,
  the mean over the uniform policies after one warm-up call.

Usage: python benchmarks/bench_accuracy.py [--finetune-steps 20] [--lr 0.01] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.models.digits import BUILTIN_MODELS, load_builtin


@dataclass
class Args:
    models: tuple[str, ...] = ("digits_cnn", "digits_mobilenet")
    bits: tuple[int, ...] = (8, 6, 5, 4, 3, 2)
    finetune_steps: int = 20
    lr: float = 1e-2
    calibration_batches: int = 2
    eval_batches: int | None = None
    weight_clip: str = "mse"
    act_clip: str = "mse"
    learn_clip: bool = False
    seed: int = 0
    threads: int = 2


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Args):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            kind = int if field.name == "bits" else str
            parser.add_argument(flag, nargs="+", type=kind, default=list(default))
        elif field.name == "eval_batches":
            parser.add_argument(flag, type=int, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    ns = parser.parse_args()
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(Args)}
    values["models"] = tuple(values["models"])
    values["bits"] = tuple(values["bits"])
    return Args(**values)


def run_model(name: str, args: Args) -> dict:
    t0 = time.perf_counter()
    built = load_builtin(name, verbose=True)
    load_s = time.perf_counter() - t0
    rows = {}
    timing = {}
    for steps in (0, args.finetune_steps):
        oracle = TorchAccuracyOracle(
            built.model,
            built.train_data,
            built.val_data,
            finetune_steps=steps,
            lr=args.lr,
            eval_batches=args.eval_batches,
            seed=args.seed,
            calibration_batches=args.calibration_batches,
            weight_clip=args.weight_clip,
            act_clip=args.act_clip,
            learn_clip=args.learn_clip,
        )
        n = oracle.n_layers
        # Warm-up call (first-call allocations), not counted in the timing, not cached.
        oracle(np.full(n, 8), np.full(n, 7))
        oracle.timing = dict.fromkeys(oracle.timing, 0.0)
        evaluations = oracle.n_evaluations
        rows[steps] = {b: oracle(np.full(n, b), np.full(n, b)) for b in args.bits}
        calls = oracle.n_evaluations - evaluations
        timing[steps] = {k: v / calls for k, v in oracle.timing.items()}
    return {
        "name": name,
        "layers": n,
        "float": oracle.reference_accuracy,
        "train_s": built.train_seconds,
        "load_s": load_s,
        "rows": rows,
        "timing": timing,
        "n_val": len(built.val_data.labels),
        "n_train": len(built.train_data.labels),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"bench_accuracy: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"seed {args.seed}, weight_clip={args.weight_clip}, act_clip={args.act_clip}, "
        f"learn_clip={args.learn_clip}, calibration_batches={args.calibration_batches}, "
        f"fine-tune {args.finetune_steps} SGD steps (batch 64, lr {args.lr})"
    )
    results = [run_model(name, args) for name in args.models]

    print()
    print("Top-1 accuracy (%) on the held-out split, uniform bits (weights = activations)")
    head = f"{'model':<18} {'layers':>6} {'fine-tune':>10} {'float':>7}" + "".join(
        f" {f'{b}-bit':>7}" for b in args.bits
    )
    print(head)
    print("-" * len(head))
    for r in results:
        for steps, accs in r["rows"].items():
            print(
                f"{r['name']:<18} {r['layers']:>6} {f'{steps} steps':>10} {100 * r['float']:>7.2f}"
                + "".join(f" {100 * accs[b]:>7.2f}" for b in args.bits)
            )

    print()
    print("Seconds per oracle call (cache miss), mean over the uniform policies")
    head = (
        f"{'model':<18} {'fine-tune':>10} {'calibration':>12} {'fine-tune':>10} "
        f"{'evaluation':>11} {'total':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        for steps, t in r["timing"].items():
            print(
                f"{r['name']:<18} {f'{steps} steps':>10} {t['calibration_s']:>12.3f} "
                f"{t['finetune_s']:>10.3f} {t['evaluation_s']:>11.3f} {t['total_s']:>8.3f}"
            )

    print()
    for r in results:
        spec = BUILTIN_MODELS[r["name"]]
        how = f"trained in {r['train_s']:.1f} s" if r["train_s"] else "loaded from cache"
        print(
            f"{r['name']}: {spec.description}; {r['n_train']} train / {r['n_val']} val images; "
            f"{how} ({r['load_s']:.1f} s with data)"
        )


if __name__ == "__main__":
    main()
