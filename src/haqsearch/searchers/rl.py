"""Glue between a :class:`SearchProblem` and reinforcement-learning agents.

:func:`make_problem_env` builds haqsim's sequential environment on the problem's cost table,
budget, bit ranges and reward, with an oracle that goes through the problem's cache.
:class:`EpisodeRecorder` (an SB3 callback) records each finished episode's enforced policy as an
evaluation and stops training once the episode budget is spent.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from haqsearch.problem import SearchProblem
from haqsim.env import MixedPrecisionEnv

__all__ = ["EpisodeRecorder", "ProblemOracle", "make_problem_env"]


class ProblemOracle:
    """An :class:`haqsim.AccuracyOracle` that answers through the problem's cache."""

    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        self.reference_accuracy = problem.reference_accuracy
        self.last_seconds = 0.0

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        acc, self.last_seconds = self.problem.accuracy(w_bits, a_bits)
        return acc


def make_problem_env(problem: SearchProblem, action_type: str = "continuous") -> MixedPrecisionEnv:
    """The sequential environment of ``problem`` (same table, budget, ranges, reward)."""
    return MixedPrecisionEnv(
        table=problem.table,
        budget=problem.budget,
        oracle=ProblemOracle(problem),
        enforcement=problem.enforcement,
        action_type=action_type,
        min_bits=problem.min_bits,
        max_bits=problem.max_bits,
        pin=problem.pin,
        reward_scale=problem.reward_scale,
    )


class EpisodeRecorder(BaseCallback):
    """Records every finished episode in the problem; stops after ``episodes`` of them.

    Args:
        problem: Where evaluations are recorded.
        source: Searcher name written with each evaluation.
        episodes: Episode budget of this run.
    """

    def __init__(self, problem: SearchProblem, source: str, episodes: int) -> None:
        super().__init__()
        self.problem = problem
        self.source = source
        self.episodes = episodes
        self.done_episodes = 0

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", np.zeros(len(infos), bool))
        for info, done in zip(infos, dones, strict=False):
            if not done or "accuracy" not in info:
                continue
            seconds = 0.0
            env = self.training_env.envs[0] if hasattr(self.training_env, "envs") else None
            if env is not None and isinstance(env.unwrapped.oracle, ProblemOracle):
                seconds = env.unwrapped.oracle.last_seconds
            self.problem.record(
                info["w_bits"],
                info["a_bits"],
                info["accuracy"],
                info["limited"],
                self.source,
                seconds,
            )
            self.done_episodes += 1
        return self.done_episodes < self.episodes
