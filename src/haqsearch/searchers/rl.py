"""Glue between a :class:`SearchProblem` and reinforcement-learning agents.

:func:`make_problem_env` builds haqsim's sequential environment on the problem's cost table,
budget, bit ranges and reward, with an oracle that goes through the problem's cache.
:func:`make_problem_vec_env` builds ``n_envs`` of them as a :class:`PoolVecEnv`, whose episodes
end together and whose final accuracy measurements run at the same time on the problem's oracle
pool. :class:`EpisodeRecorder` (an SB3 callback) records each finished episode's enforced policy
as an evaluation and stops training once the episode budget is spent.

Why not ``SubprocVecEnv``: an environment step costs microseconds; only the accuracy oracle is
worth another process. Keeping the environments in this process and sending just the oracle calls
to the pool gives each worker its own model replica all the same, and also one shared accuracy
cache (a policy proposed by two environments is measured once), resuming from an earlier
history, workers replaced when they die (the interrupted measurement is repeated, the episode
goes on), and Ray actors in place of local processes, none of which ``SubprocVecEnv`` offers.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from haqsearch.problem import SearchProblem
from haqsim.env import MixedPrecisionEnv
from haqsim.oracle import AccuracyOracle

__all__ = [
    "EpisodeRecorder",
    "PoolVecEnv",
    "ProblemOracle",
    "make_problem_env",
    "make_problem_vec_env",
    "n_decisions",
    "episode_timesteps",
]


class ProblemOracle:
    """An :class:`haqsim.AccuracyOracle` that answers through the problem's cache."""

    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        self.reference_accuracy = problem.reference_accuracy
        self.last_seconds = 0.0

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        acc, self.last_seconds = self.problem.accuracy(w_bits, a_bits)
        return acc


def make_problem_env(
    problem: SearchProblem,
    action_type: str = "continuous",
    oracle: AccuracyOracle | None = None,
) -> MixedPrecisionEnv:
    """The sequential environment of ``problem`` (same table, budget, ranges, reward).

    Args:
        problem: The search problem.
        action_type: ``"continuous"`` or ``"discrete"``.
        oracle: The environment's oracle; by default a :class:`ProblemOracle`.
    """
    return MixedPrecisionEnv(
        table=problem.table,
        budget=problem.budget,
        oracle=ProblemOracle(problem) if oracle is None else oracle,
        enforcement=problem.enforcement,
        action_type=action_type,
        min_bits=problem.min_bits,
        max_bits=problem.max_bits,
        pin=problem.pin,
        reward_scale=problem.reward_scale,
    )


class _VecOracle(ProblemOracle):
    """The oracle of environment ``index`` of a :class:`PoolVecEnv`.

    While it waits for the problem's pool it releases the vector's step lock, so that the other
    environments can reach their own measurement. An environment past the vector's episode limit
    gets the reference accuracy without a measurement (that episode is never recorded).
    """

    def __init__(self, problem: SearchProblem, vec: PoolVecEnv, index: int) -> None:
        super().__init__(problem)
        self.vec, self.index = vec, index

    def __call__(self, w_bits: np.ndarray, a_bits: np.ndarray) -> float:
        if not self.vec.measuring[self.index]:
            self.last_seconds = 0.0
            return self.reference_accuracy
        if self.problem.pool is None:
            return super().__call__(w_bits, a_bits)
        self.vec.lock.release()
        try:
            return super().__call__(w_bits, a_bits)
        finally:
            self.vec.lock.acquire()


class PoolVecEnv(DummyVecEnv):
    """A :class:`~stable_baselines3.common.vec_env.DummyVecEnv` that steps its environments in
    threads, so their accuracy measurements run at once on the problem's oracle pool.

    Everything but the measurement runs under one lock (the cost model's Numba kernels are not
    for concurrent use from several threads), so only the pool works in parallel. Without a pool
    the environments step one after another, as in a ``DummyVecEnv``.

    Args:
        problem: The search problem (its cache and pool are shared by the environments).
        n_envs: Number of environments.
        episode_limit: Episodes to measure in all; an episode beyond it (the last round when
            ``n_envs`` does not divide it) gets the reference accuracy without a measurement.
        action_type: ``"continuous"`` or ``"discrete"``.
    """

    def __init__(
        self,
        problem: SearchProblem,
        n_envs: int,
        episode_limit: int | None = None,
        action_type: str = "continuous",
    ) -> None:
        self.lock = threading.Lock()
        self.measuring = [True] * n_envs
        self.episode_limit = episode_limit
        self.finished_episodes = 0
        fns: list[Callable[[], gym.Env]] = [
            (lambda i=i: make_problem_env(problem, action_type, _VecOracle(problem, self, i)))
            for i in range(n_envs)
        ]
        super().__init__(fns)
        self._threads = cf.ThreadPoolExecutor(n_envs, thread_name_prefix="haq-env")

    def _step_one(self, index: int) -> tuple[Any, ...]:
        with self.lock:
            return self.envs[index].step(self.actions[index])

    def step_wait(self) -> VecEnvStepReturn:
        if self.episode_limit is not None:
            left = self.episode_limit - self.finished_episodes
            self.measuring = [i < left for i in range(self.num_envs)]
        results = list(self._threads.map(self._step_one, range(self.num_envs)))
        for env_idx, (obs, reward, terminated, truncated, info) in enumerate(results):
            # As DummyVecEnv.step_wait, from here on.
            self.buf_rews[env_idx] = reward
            self.buf_infos[env_idx] = info
            self.buf_dones[env_idx] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[env_idx]:
                self.finished_episodes += 1
                info["terminal_observation"] = obs
                obs, self.reset_infos[env_idx] = self.envs[env_idx].reset()
            self._save_obs(env_idx, obs)
        return (
            self._obs_from_buf(),
            np.copy(self.buf_rews),
            np.copy(self.buf_dones),
            deepcopy(self.buf_infos),
        )

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        super().close()


def make_problem_vec_env(
    problem: SearchProblem,
    n_envs: int,
    episodes: int | None = None,
    action_type: str = "continuous",
) -> MixedPrecisionEnv | PoolVecEnv:
    """The environment of ``problem`` for an agent with ``n_envs`` environments.

    One environment is the plain :func:`make_problem_env` (SB3 wraps it as usual); more are a
    :class:`PoolVecEnv` that measures at most ``episodes`` episodes.
    """
    if not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if n_envs == 1:
        return make_problem_env(problem, action_type)
    return PoolVecEnv(problem, n_envs, episodes, action_type)


def n_decisions(env: MixedPrecisionEnv | PoolVecEnv) -> int:
    """Steps per episode of a (vector of) sequential environment(s)."""
    first = env.envs[0] if isinstance(env, PoolVecEnv) else env
    return int(first.unwrapped.n_decisions)


def episode_timesteps(episodes: int, n_envs: int, steps: int) -> int:
    """SB3's ``total_timesteps`` for ``episodes`` episodes of ``steps`` steps on ``n_envs``
    environments (whole rounds; :class:`EpisodeRecorder` stops at ``episodes``)."""
    return -(-episodes // n_envs) * n_envs * steps


class EpisodeRecorder(BaseCallback):
    """Records every finished episode in the problem; stops after ``episodes`` of them.

    With several environments, episodes ending at the same step are recorded in environment
    order, and those beyond ``episodes`` are dropped.

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

    def _seconds(self, index: int) -> float:
        envs = getattr(self.training_env, "envs", None)
        if envs is None or index >= len(envs):
            return 0.0
        oracle = getattr(envs[index].unwrapped, "oracle", None)
        return float(oracle.last_seconds) if isinstance(oracle, ProblemOracle) else 0.0

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", np.zeros(len(infos), bool))
        for index, (info, done) in enumerate(zip(infos, dones, strict=False)):
            if not done or "accuracy" not in info or self.done_episodes >= self.episodes:
                continue
            self.problem.record(
                info["w_bits"],
                info["a_bits"],
                info["accuracy"],
                info["limited"],
                self.source,
                self._seconds(index),
            )
            self.done_episodes += 1
        return self.done_episodes < self.episodes
