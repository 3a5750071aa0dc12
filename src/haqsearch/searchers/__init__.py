"""Searchers over bit policies, all driven through :class:`haqsearch.problem.SearchProblem`.

Registered by name: ``ddpg`` (HAQ's agent on stable-baselines3), ``random``, ``evolution``,
``greedy``, ``uniform``; and any stable-baselines3 algorithm as ``sb3:NAME``.
"""

from haqsearch.searchers import ddpg, simple  # noqa: F401  (registers the searchers)
from haqsearch.searchers.base import Searcher, get_searcher, register, searcher_names

__all__ = ["Searcher", "get_searcher", "register", "searcher_names"]
