"""``haqsim``: cost estimates, lookup tables and presets from the command line.

haqsim estimate --workload mobilenet_v2 --hardware bismo-edge --bits 8
haqsim estimate --workload resnet50 --hardware bitfusion --w-bits 4 --a-bits 6 --json
haqsim estimate --workload my_net.json --hardware my_accel.toml --policy policy.json
haqsim table --workload mobilenet_v2 --hardware bismo-cloud --out table.npy
haqsim list
haqsim warmup
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from haqsim import zoo
from haqsim.cost import CostReport, CostTable, estimate, warmup
from haqsim.errors import HaqsimError
from haqsim.hardware import BitFusionConfig, preset, preset_names
from haqsim.policy import Policy
from haqsim.workload import LayerKind

__all__ = ["format_report", "main"]


def _out_arg(value: str) -> Path:
    """The ``--out`` path, checked before any work is done."""
    out = Path(value)
    if out.suffix.lower() not in (".npy", ".csv"):
        raise HaqsimError(f"--out must end in .npy or .csv, got {value!r}")
    if not out.parent.is_dir():
        problem = "is not a directory" if out.parent.exists() else "does not exist"
        raise HaqsimError(
            f"--out directory {str(out.parent)!r} {problem}; create it first, got {value!r}"
        )
    if out.is_dir():
        raise HaqsimError(f"--out must be a file, got the directory {value!r}")
    return out


def _bits_arg(value: str | None, n: int, what: str) -> np.ndarray | int | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise HaqsimError(
            f"{what} must be an integer or a comma-separated list, got {value!r}"
        ) from None
    return nums[0] if len(nums) == 1 else np.array(nums)


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale or scale == 1e-12:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _bytes(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3f} {unit}"
    return f"{n:.0f} B"


def format_report(rep: CostReport) -> str:
    """A per-layer table and totals in human units."""
    lines = [
        f"{rep.workload.name} on {rep.hardware.name} ({type(rep.hardware).__name__}, "
        f"{rep.hardware.clock_hz / 1e6:g} MHz), batch {rep.batch}",
        f"{'#':>3} {'layer':<28} {'kind':<9} {'w':>2} {'a':>2} {'cycles':>13} {'stall':>12} "
        f"{'latency':>10} {'energy':>10} {'bound':<7}",
    ]
    energy_pj = rep.energy_pj
    for i, name in enumerate(rep.workload.names):
        lines.append(
            f"{i:>3} {name[:28]:<28} {LayerKind(int(rep.workload.kind[i])).name.lower():<9} "
            f"{int(rep.w_bits[i]):>2} {int(rep.a_bits[i]):>2} {int(rep.cycles[i]):>13,} "
            f"{int(rep.stall_cycles[i]):>12,} {_si(float(rep.latency_s[i]), 's'):>10} "
            f"{_si(float(energy_pj[i]) * 1e-12, 'J'):>10} "
            f"{'memory' if rep.memory_bound[i] else 'compute':<7}"
        )
    t = rep.totals()
    split = rep.total_energy_split_j()
    lines += [
        "",
        f"total cycles   {t['cycles']:,} (compute {t['compute_cycles']:,}, stall "
        f"{t['stall_cycles']:,})",
        f"latency        {_si(t['latency_s'], 's')} per batch of {rep.batch}",
        f"energy         {_si(t['energy_j'], 'J')} (compute {_si(split['compute'], 'J')}, "
        f"on-chip {_si(split['onchip'], 'J')}, DRAM {_si(split['dram'], 'J')})",
        f"DRAM traffic   {_bytes(t['dram_read_bits'] / 8)} read, "
        f"{_bytes(t['dram_write_bits'] / 8)} written",
        f"model size     {_bytes(t['size_bytes'])}",
        f"BitOps         {t['bitops']:.4g} per image",
        f"memory-bound   {t['memory_bound_layers']} of {len(rep.workload)} layers",
    ]
    return "\n".join(lines)


def _cmd_estimate(args: argparse.Namespace) -> int:
    wl = zoo.get(args.workload)
    hw = preset(args.hardware)
    n = len(wl)
    if args.policy:
        policy = Policy.from_json(args.policy, wl)
        w, a = policy.w_bits, policy.a_bits
    else:
        w = _bits_arg(args.w_bits, n, "--w-bits")
        a = _bits_arg(args.a_bits, n, "--a-bits")
        w = args.bits if w is None else w
        a = args.bits if a is None else a
    rep = estimate(wl, hw, w, a, batch=args.batch)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print(format_report(rep))
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    out = _out_arg(args.out)
    wl = zoo.get(args.workload)
    hw = preset(args.hardware)
    start = time.perf_counter()
    table = CostTable.build(wl, hw, batch=args.batch, max_bits=args.max_bits)
    elapsed = time.perf_counter() - start
    metric = table.cycles if args.metric == "cycles" else table.energy_pj
    try:
        if out.suffix.lower() == ".csv":
            rows = ["layer,name,w_bits,a_bits," + args.metric]
            for i, name in enumerate(wl.names):
                for wi in range(table.hi - table.lo + 1):
                    for ai in range(table.hi - table.lo + 1):
                        rows.append(
                            f"{i},{name},{wi + table.lo},{ai + table.lo},{metric[i, wi, ai]}"
                        )
            out.write_text("\n".join(rows) + "\n")
        else:
            np.save(out, metric)
    except OSError as exc:
        raise HaqsimError(f"--out file {str(out)!r} must be writable: {exc}") from exc
    print(
        f"wrote {out}: {args.metric} of {wl.name} on {hw.name}, shape {metric.shape} indexed "
        f"[layer, w - {table.lo}, a - {table.lo}], batch {table.batch} ({elapsed:.2f} s)"
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    print("workloads:")
    for name in zoo.names():
        wl = zoo.get(name)
        print(
            f"  {name:<22} {len(wl):>3} layers  {wl.total_macs / 1e6:>9.1f} M MACs  "
            f"{wl.total_params / 1e6:>7.2f} M params"
        )
    print("hardware presets:")
    for name in preset_names():
        hw = preset(name)
        if isinstance(hw, BitFusionConfig):
            desc = f"Bit Fusion {hw.n_rows}x{hw.m_cols}, {hw.dram_bits_per_cycle} DRAM bits/cycle"
        else:
            desc = (
                f"bit-serial {hw.dm}x{hw.dn}x{hw.dk}, {hw.fetch_bits_per_cycle} fetch bits/cycle, "
                f"{hw.w_bits_per_pass}w/{hw.a_bits_per_pass}a bits per pass"
            )
        print(f"  {name:<16} {desc}, {hw.clock_hz / 1e6:g} MHz, batch {hw.batch}")
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    warmup()
    print(f"kernels ready in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haqsim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("estimate", help="latency, energy and size of a bit policy")
    e.add_argument("--workload", required=True, help="zoo name or workload .json/.csv file")
    e.add_argument("--hardware", required=True, help="preset name or .toml/.json file")
    e.add_argument("--bits", type=int, default=8, help="bits for weights and activations")
    e.add_argument("--w-bits", help="weight bits: one value or a comma-separated list per layer")
    e.add_argument("--a-bits", help="activation bits: one value or a list per layer")
    e.add_argument("--policy", help="policy JSON file (bits keyed by layer name)")
    e.add_argument("--batch", type=int, help="images per inference (default: the preset's)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_cmd_estimate)

    t = sub.add_parser("table", help="write the per-layer [w, a] cost lookup table")
    t.add_argument("--workload", required=True)
    t.add_argument("--hardware", required=True)
    t.add_argument("--out", required=True, help="output .npy or .csv")
    t.add_argument("--metric", choices=("cycles", "energy_pj"), default="cycles")
    t.add_argument("--max-bits", type=int, help="largest bitwidth (default 8)")
    t.add_argument("--batch", type=int)
    t.set_defaults(func=_cmd_table)

    sub.add_parser("list", help="built-in workloads and hardware presets").set_defaults(
        func=_cmd_list
    )
    sub.add_parser("warmup", help="compile the Numba kernels").set_defaults(func=_cmd_warmup)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HaqsimError as exc:
        print(f"haqsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
