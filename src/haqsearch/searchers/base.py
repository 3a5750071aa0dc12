"""The searcher protocol and the registry of searchers by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from haqsearch.problem import SearchProblem
from haqsim.errors import unknown_name

__all__ = ["Searcher", "get_searcher", "register", "searcher_names"]


@runtime_checkable
class Searcher(Protocol):
    """Proposes policies to a :class:`SearchProblem` until ``episodes`` evaluations are used.

    Every searcher spends exactly ``episodes`` evaluations (one per proposed policy; an
    evaluation is one accuracy measurement in HAQ's terms, one episode for an RL agent), so
    searchers compare at equal cost. It stops early only if it has nothing left to propose
    (e.g. the uniform baseline).
    """

    name: str

    def run(self, problem: SearchProblem, episodes: int, seed: int) -> None: ...


_REGISTRY: dict[str, Callable[..., Searcher]] = {}


def register(name: str) -> Callable[[Callable[..., Searcher]], Callable[..., Searcher]]:
    """Class decorator adding a searcher factory to the registry."""

    def deco(factory: Callable[..., Searcher]) -> Callable[..., Searcher]:
        _REGISTRY[name] = factory
        return factory

    return deco


def searcher_names() -> list[str]:
    """Registered names; any stable-baselines3 algorithm is also usable as ``sb3:NAME``."""
    return sorted(_REGISTRY)


def get_searcher(name: str, **kwargs: Any) -> Searcher:
    """A searcher by name: ``ddpg``, ``random``, ``evolution``, ``greedy``, ``uniform`` or
    ``sb3:ALGO`` (e.g. ``sb3:TD3``, ``sb3:PPO``, ``sb3:SAC``)."""
    if name.startswith("sb3:"):
        from haqsearch.searchers.sb3 import SB3Searcher

        return SB3Searcher(name[4:], **kwargs)
    if name not in _REGISTRY:
        raise unknown_name("searcher", name, [*searcher_names(), "sb3:<ALGO>"])
    return _REGISTRY[name](**kwargs)
