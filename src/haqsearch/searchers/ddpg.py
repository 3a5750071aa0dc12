"""HAQ's agent as thin extensions of stable-baselines3's DDPG.

HAQ (Wang et al., 2019) trains DDPG with a few departures from the textbook agent; each is one
small SB3 extension here, not a rewrite:

* **Warm-up**: ``warmup_episodes`` (20) episodes of uniform random actions with no updates:
  SB3's ``learning_starts``, counted in steps (episodes x decisions per episode).
* **Exploration**: a normal distribution around the actor's output, *truncated* to the action
  bounds, whose sigma starts at 0.5 and is multiplied by 0.99 per episode after warm-up:
  :class:`TruncatedNormalDecayNoise`, sampled by :meth:`HAQDDPG._sample_action` (SB3's own noise
  is added and then clipped, which piles probability mass on the bounds).
* **Credit**: every transition of an episode gets the episode's final reward (the environment
  pays reward only at the end), and a moving average of rewards is subtracted as a baseline
  when a batch is sampled: :class:`EpisodeRewardReplayBuffer`.
* **Learning rates**: actor 1e-4, critic 1e-3 (SB3 uses one rate for both):
  :meth:`HAQDDPG._update_learning_rate`.
* **Networks and the rest**: two hidden layers of 300 for actor and critic (HAQ's code), tau 0.01,
  discount 1, batch 64, a replay buffer of ``128 x`` steps per episode... as in HAQ.
* **Best policy**: the problem keeps the best evaluation as episodes end
  (:class:`~haqsearch.problem.SearchProblem`), so an interrupted run keeps its result.

Several environments (``n_envs``, by default the problem's workers): each step acts in all of
them, and their episodes end together, so their accuracies are measured at once on the oracle
pool (:class:`~haqsearch.searchers.rl.PoolVecEnv`). One truncated-normal generator serves all
environments (independent draws) and sigma decays once per finished episode; warm-up counts
episodes over all environments; ``gradient_steps=-1`` keeps HAQ's one update per transition. The
run is *not* identical to ``n_envs=1`` with the same seed: the agent updates after each vector
step (``n_envs`` updates at once) instead of after each transition, so ``n_envs`` episodes are
played with the same actor, and the random draws are interleaved differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DDPG
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import MaybeCallback, ReplayBufferSamples
from stable_baselines3.common.utils import update_learning_rate

from haqsearch.problem import SearchProblem
from haqsearch.searchers.base import register
from haqsearch.searchers.rl import (
    EpisodeRecorder,
    episode_timesteps,
    make_problem_vec_env,
    n_decisions,
)

__all__ = [
    "DDPGSearcher",
    "EpisodeRewardReplayBuffer",
    "HAQDDPG",
    "TruncatedNormalDecayNoise",
]


class TruncatedNormalDecayNoise(ActionNoise):
    """Truncated-normal exploration around the actor's action, with per-episode decay.

    Sampling needs the actor's action (the truncation bounds are relative to it), so the noise
    is drawn by :meth:`sample` from :meth:`HAQDDPG._sample_action`. Calling the object (SB3's
    additive protocol) returns an untruncated draw for other algorithms.

    Args:
        sigma: Initial standard deviation, in units of the normalised action ([-1, 1]; HAQ's 0.5
            on its [0, 1] actions is 1.0 here).
        decay: Factor applied to sigma at every episode end after ``warmup_episodes``.
        warmup_episodes: Episodes before decay starts.
        low, high: Action bounds.
        seed: Seed of the noise generator.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        decay: float = 0.99,
        warmup_episodes: int = 0,
        low: float = -1.0,
        high: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.sigma0 = float(sigma)
        self.decay = float(decay)
        self.warmup_episodes = int(warmup_episodes)
        self.low, self.high = float(low), float(high)
        self.episodes = 0
        self.rng = np.random.default_rng(seed)

    @property
    def sigma(self) -> float:
        return self.sigma0 * self.decay ** max(0, self.episodes - self.warmup_episodes)

    def sample(self, mean: np.ndarray) -> np.ndarray:
        """A draw from N(mean, sigma) truncated to [low, high] (rejection sampling)."""
        mean = np.clip(np.asarray(mean, np.float64), self.low, self.high)
        out = np.empty_like(mean)
        todo = np.ones(mean.shape, bool)
        for _ in range(1000):
            draw = self.rng.normal(mean, self.sigma)
            ok = todo & (draw >= self.low) & (draw <= self.high)
            out[ok] = draw[ok]
            todo &= ~ok
            if not todo.any():
                break
        out[todo] = mean[todo]  # practically unreachable: the mean lies inside the bounds
        return out.astype(np.float32)

    def __call__(self) -> np.ndarray:
        return self.rng.normal(0.0, self.sigma, 1).astype(np.float32)

    def reset(self, indices: Any = None) -> None:
        """Called by SB3 at every episode end (with ``indices=[env]`` for several
        environments): one decay step per finished episode."""
        self.episodes += 1 if indices is None else len(list(indices))


class EpisodeRewardReplayBuffer(ReplayBuffer):
    """A replay buffer that credits each episode's final reward to all its transitions.

    Transitions are held back until their episode ends (all environments of a vector end
    together: every episode has the same number of decisions), then stored with the final
    reward. When a batch is sampled, a moving average of batch rewards (rate ``baseline_alpha``,
    HAQ's 0.5) is subtracted, as HAQ's agent does.
    """

    def __init__(self, *args: Any, baseline_alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.baseline_alpha = float(baseline_alpha)
        self.baseline: float | None = None
        self._pending: list[tuple[Any, ...]] = []

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        self._pending.append(
            (np.copy(obs), np.copy(next_obs), np.copy(action), np.copy(done), infos)
        )
        done = np.asarray(done, bool)
        if not done.any():
            return
        if not done.all():
            raise ValueError(
                "EpisodeRewardReplayBuffer needs all environments to end their episodes together "
                f"(equal-length episodes), got done={done.tolist()}"
            )
        final = np.asarray(reward, np.float32)
        for o, no, a, d, inf in self._pending:
            super().add(o, no, a, final, d, inf)
        self._pending.clear()

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        batch = super().sample(batch_size, env)
        mean = float(batch.rewards.mean())
        if self.baseline is None:
            self.baseline = mean
        else:
            self.baseline += self.baseline_alpha * (mean - self.baseline)
        return batch._replace(rewards=batch.rewards - self.baseline)


class HAQDDPG(DDPG):
    """DDPG with HAQ's separate learning rates and truncated-normal exploration.

    Args:
        actor_lr: Actor learning rate (HAQ: 1e-4).
        critic_lr: Critic learning rate (HAQ: 1e-3).
        **kwargs: Passed to :class:`stable_baselines3.DDPG`.
    """

    def __init__(
        self, *args: Any, actor_lr: float = 1e-4, critic_lr: float = 1e-3, **kwargs: Any
    ) -> None:
        self.actor_lr = float(actor_lr)
        self.critic_lr = float(critic_lr)
        kwargs.setdefault("learning_rate", self.actor_lr)
        super().__init__(*args, **kwargs)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        noise = self.action_noise
        out = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if isinstance(noise, TruncatedNormalDecayNoise):
            # SB3 gives each environment a deep copy (the same generator state: identical
            # draws); one generator draws independently for all environments instead.
            self.action_noise = noise
        return out

    def _update_learning_rate(self, optimizers: Any) -> None:
        self.logger.record("train/learning_rate", self.actor_lr)
        update_learning_rate(self.actor.optimizer, self.actor_lr)
        update_learning_rate(self.critic.optimizer, self.critic_lr)

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            # HAQ's warm-up: uniform random actions, no noise on top.
            return super()._sample_action(learning_starts, None, n_envs)
        if not isinstance(action_noise, TruncatedNormalDecayNoise) or not isinstance(
            self.action_space, spaces.Box
        ):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        unscaled, _ = self.predict(self._last_obs, deterministic=True)
        scaled = action_noise.sample(self.policy.scale_action(unscaled))
        return self.policy.unscale_action(scaled), scaled


@register("ddpg")
class DDPGSearcher:
    """HAQ's DDPG agent on the sequential environment (two decisions per layer).

    Args:
        warmup_episodes: Episodes of uniform random actions before learning (HAQ: 20).
        hidden: Hidden layer sizes of actor and critic (HAQ's code: 300, 300).
        actor_lr, critic_lr: Learning rates (HAQ: 1e-4, 1e-3).
        tau: Target network update rate (HAQ: 0.01).
        batch_size: Minibatch size (HAQ: 64).
        buffer_episodes: Replay capacity in episodes (HAQ: 128 x steps per episode... i.e. 128
            episodes' worth of transitions).
        sigma, sigma_decay: Exploration noise (HAQ: 0.5 on [0, 1] actions = 1.0 here; 0.99).
        device: Torch device for the agent (``"cpu"`` by default: the networks are tiny).
        verbose: SB3 verbosity.
        n_envs: Environments played at once; ``None`` uses ``problem.workers`` (see the module
            docstring for how the run differs from ``n_envs=1``).
    """

    name = "ddpg"

    def __init__(
        self,
        warmup_episodes: int = 20,
        hidden: tuple[int, ...] = (300, 300),
        actor_lr: float = 1e-4,
        critic_lr: float = 1e-3,
        tau: float = 0.01,
        batch_size: int = 64,
        buffer_episodes: int = 128,
        sigma: float = 1.0,
        sigma_decay: float = 0.99,
        device: str = "cpu",
        verbose: int = 0,
        n_envs: int | None = None,
    ) -> None:
        self.warmup_episodes = warmup_episodes
        self.hidden = list(hidden)
        self.actor_lr, self.critic_lr = actor_lr, critic_lr
        self.tau, self.batch_size, self.buffer_episodes = tau, batch_size, buffer_episodes
        self.sigma, self.sigma_decay = sigma, sigma_decay
        self.device, self.verbose = device, verbose
        self.n_envs = n_envs
        self.model: HAQDDPG | None = None

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None:
        n_envs = self.n_envs or problem.workers
        env = make_problem_vec_env(problem, n_envs, episodes)
        steps = n_decisions(env)
        noise = TruncatedNormalDecayNoise(
            self.sigma, self.sigma_decay, self.warmup_episodes, seed=seed
        )
        torch.manual_seed(seed)
        self.model = HAQDDPG(
            "MlpPolicy",
            env,
            actor_lr=self.actor_lr,
            critic_lr=self.critic_lr,
            buffer_size=max(self.buffer_episodes * steps, self.batch_size),
            learning_starts=self.warmup_episodes * steps,
            batch_size=self.batch_size,
            tau=self.tau,
            gamma=1.0,
            action_noise=noise,
            replay_buffer_class=EpisodeRewardReplayBuffer,
            gradient_steps=1 if n_envs == 1 else -1,
            policy_kwargs={"net_arch": {"pi": self.hidden, "qf": self.hidden}},
            seed=seed,
            device=self.device,
            verbose=self.verbose,
        )
        self.model.learn(
            total_timesteps=episode_timesteps(episodes, n_envs, steps),
            callback=EpisodeRecorder(problem, self.name, episodes),
        )
        env.close()
