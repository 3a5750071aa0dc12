"""haqsim: cycle and energy models of bit-serial and Bit Fusion accelerators for mixed precision.

Quick start::

    import haqsim
    wl = haqsim.zoo.mobilenet_v2()
    report = haqsim.estimate(wl, "bismo-edge", w_bits=4, a_bits=6)
    report.total_latency_s, report.total_energy_j

    table = haqsim.CostTable.build(wl, "bismo-edge")   # every layer x every (w, a), cached
    table.evaluate(w_policies, a_policies)               # thousands of policies per call
"""

from haqsim import zoo
from haqsim.budget import Budget
from haqsim.cost import CostReport, CostTable, PolicyCosts, estimate, warmup
from haqsim.env import ENV_IDS, MixedPrecisionEnv, MixedPrecisionOneShotEnv, register_envs
from haqsim.errors import (
    BudgetError,
    HaqsimError,
    HardwareError,
    PolicyError,
    UnknownNameError,
    WorkloadError,
)
from haqsim.hardware import BitFusionConfig, BitSerialConfig, Hardware, load, preset, preset_names
from haqsim.limit import BudgetEnforcer
from haqsim.oracle import AccuracyOracle
from haqsim.policy import Policy
from haqsim.proxy import NoiseProxyOracle
from haqsim.workload import Layer, LayerKind, LayerTable, conv, linear

__version__ = "0.1.0"

__all__ = [
    # hardware
    "BitFusionConfig",
    "BitSerialConfig",
    "Hardware",
    "load",
    "preset",
    "preset_names",
    # workloads
    "Layer",
    "LayerKind",
    "LayerTable",
    "conv",
    "linear",
    "zoo",
    # costs
    "CostReport",
    "CostTable",
    "PolicyCosts",
    "estimate",
    "warmup",
    # policies and budgets
    "Budget",
    "BudgetEnforcer",
    "Policy",
    # the environment
    "ENV_IDS",
    "MixedPrecisionEnv",
    "MixedPrecisionOneShotEnv",
    "register_envs",
    # accuracy
    "AccuracyOracle",
    "NoiseProxyOracle",
    # errors
    "BudgetError",
    "HaqsimError",
    "HardwareError",
    "PolicyError",
    "UnknownNameError",
    "WorkloadError",
]
