"""Any stable-baselines3 algorithm as a searcher: ``sb3:TD3``, ``sb3:PPO``, ``sb3:SAC``, ...

The algorithm runs unchanged on the sequential environment built from the problem; each
finished episode is one evaluation. Algorithm keyword arguments pass through (``algo_kwargs``).
With an oracle pool, ``n_envs`` environments (by default the pool's workers) play at once and
their accuracies are measured in parallel (:class:`~haqsearch.searchers.rl.PoolVecEnv`); as for
DDPG, that run differs from a one-environment run with the same seed.
"""

from __future__ import annotations

from typing import Any

import stable_baselines3
import torch

from haqsearch.problem import SearchProblem
from haqsearch.searchers.rl import (
    EpisodeRecorder,
    episode_timesteps,
    make_problem_vec_env,
    n_decisions,
)
from haqsim.errors import unknown_name

__all__ = ["SB3Searcher"]

_ALGOS = ("A2C", "DDPG", "PPO", "SAC", "TD3")


class SB3Searcher:
    """Run ``stable_baselines3.<algo>`` with ``MlpPolicy`` for ``episodes`` episodes.

    Args:
        algo: Algorithm class name in ``stable_baselines3`` (A2C, DDPG, PPO, SAC, TD3).
        device: Torch device (``"cpu"`` by default).
        n_envs: Environments played at once; ``None`` uses ``problem.workers``.
        **algo_kwargs: Passed to the algorithm's constructor.
    """

    def __init__(
        self, algo: str, device: str = "cpu", n_envs: int | None = None, **algo_kwargs: Any
    ) -> None:
        if algo not in _ALGOS:
            raise unknown_name("stable-baselines3 algorithm", algo, list(_ALGOS))
        self.algo = algo
        self.name = f"sb3:{algo}"
        self.device = device
        self.n_envs = n_envs
        self.algo_kwargs = algo_kwargs
        self.model: Any = None

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        n_envs = self.n_envs or problem.workers
        env = make_problem_vec_env(problem, n_envs, episodes)
        steps = n_decisions(env)
        kwargs = dict(self.algo_kwargs)
        if self.algo in ("PPO", "A2C"):
            # On-policy rollouts: whole episodes per update, so episodes end inside budgets.
            kwargs.setdefault("n_steps", steps * max(1, min(8, episodes // 4 or 1)))
            if self.algo == "PPO":
                kwargs.setdefault("batch_size", steps)
        else:
            kwargs.setdefault("learning_starts", min(10, max(1, episodes // 5)) * steps)
        torch.manual_seed(seed)
        cls = getattr(stable_baselines3, self.algo)
        self.model = cls("MlpPolicy", env, seed=seed, device=self.device, **kwargs)
        self.model.learn(
            total_timesteps=episode_timesteps(episodes, n_envs, steps),
            callback=EpisodeRecorder(problem, self.name, episodes),
        )
        env.close()
