"""Searchers, the search problem, resume and outputs, on the torch-free proxy oracle."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import haqsim
from haqsearch import HaqsearchError, get_searcher, search
from haqsearch.problem import SearchProblem
from haqsearch.report import pareto_front, read_history
from haqsearch.searchers.ddpg import (
    HAQDDPG,
    EpisodeRewardReplayBuffer,
    TruncatedNormalDecayNoise,
)
from haqsim import LayerTable, conv, linear
from haqsim.errors import BudgetError, UnknownNameError
from haqsim.proxy import NoiseProxyOracle

TINY = LayerTable.from_layers(
    [
        conv("c1", 3, 16, 3, 16, reads_image=True),
        conv("dw", 16, 16, 3, 16, groups=16),
        conv("pw", 16, 32, 1, 16, pad=0),
        linear("fc", 32 * 16 * 16, 10),
    ],
    name="tiny",
)
TABLE = haqsim.CostTable.build(TINY, "bismo-edge", cache=False)
ORACLE = NoiseProxyOracle(TINY, drop_at_4bit=0.05)
BUDGET = "latency=0.5x"


def problem(**kw) -> SearchProblem:
    return SearchProblem(TABLE, kw.pop("budget", BUDGET), ORACLE, min_bits=2, max_bits=5, **kw)


def brute_force_best() -> float:
    pr = problem()
    best = 0.0
    for bits in itertools.product(range(2, 6), repeat=8):
        w, a = np.array(bits[:4]), np.array(bits[4:])
        if pr.fits(w, a):
            best = max(best, ORACLE(w, a))
    return best


OPTIMUM = brute_force_best()


@pytest.mark.parametrize("name", ["ddpg", "evolution", "random", "greedy", "uniform", "sb3:PPO"])
def test_every_searcher_meets_the_budget(name):
    pr = problem()
    get_searcher(name).run(pr, 40, seed=0)
    assert pr.history, f"{name} evaluated nothing"
    assert len(pr.history) <= 40
    for ev in pr.history:
        assert pr.fits(ev.w_bits, ev.a_bits)
        assert ev.cost <= pr.enforcer.limit
        assert np.all((ev.w_bits >= 2) & (ev.w_bits <= 5))
    assert pr.best.accuracy <= OPTIMUM + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpg", "evolution", "greedy"])
def test_searchers_get_near_the_brute_force_optimum(name):
    """Margin: within 1 accuracy point of the true optimum over all 4**8 policies."""
    pr = problem()
    get_searcher(name).run(pr, 150, seed=0)
    assert pr.best.accuracy >= OPTIMUM - 0.01
    # and better than the best uniform policy that fits
    uni = problem()
    get_searcher("uniform").run(uni, 10, seed=0)
    assert pr.best.accuracy > uni.best.accuracy


def test_random_and_evolution_spend_exactly_the_episodes():
    for name in ("random", "evolution"):
        pr = problem()
        get_searcher(name).run(pr, 25, seed=1)
        assert len(pr.history) == 25
        assert [e.index for e in pr.history] == list(range(25))


def test_same_seed_same_history():
    runs = []
    for _ in range(2):
        pr = problem()
        get_searcher("ddpg", warmup_episodes=3).run(pr, 8, seed=3)
        runs.append([(e.w_bits.tolist(), e.a_bits.tolist(), e.accuracy) for e in pr.history])
    assert runs[0] == runs[1]


def test_pinned_layers_stay_pinned():
    pr = problem(pin={0: (5, 5), -1: (5, 5)})
    get_searcher("random").run(pr, 20, seed=0)
    for ev in pr.history:
        assert (ev.w_bits[0], ev.a_bits[0], ev.w_bits[-1], ev.a_bits[-1]) == (5, 5, 5, 5)


def test_evaluation_records_costs_consistently():
    pr = problem()
    ev = pr.evaluate(np.full(4, 5), np.full(4, 5), "manual")
    costs = TABLE.evaluate(ev.w_bits, ev.a_bits)
    assert ev.latency_s == float(costs.latency_s[0])
    assert ev.cost == ev.latency_s
    assert ev.cost_ratio == pytest.approx(ev.latency_s / float(TABLE.uniform(8).latency_s[0]))
    assert ev.limited  # uniform 5-bit is over a 0.5x budget on this workload
    assert ev.reward == pytest.approx(0.1 * (ev.accuracy - ORACLE.reference_accuracy))


def test_infeasible_budget_names_the_minimum():
    with pytest.raises(BudgetError, match=r"must be >= the all-min-bits cost 0\.\d+x"):
        problem(budget="latency=0.01x")


def test_unknown_searcher_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"valid searchers are: .*ddpg.*evolution"):
        get_searcher("hill-climbing")
    with pytest.raises(UnknownNameError, match="valid stable-baselines3 algorithms are"):
        get_searcher("sb3:DQN3")


# ------------------------------------------------------------------ HAQ's DDPG extensions
def test_truncated_noise_stays_in_bounds_and_decays():
    noise = TruncatedNormalDecayNoise(sigma=1.0, decay=0.5, warmup_episodes=2, seed=0)
    draws = noise.sample(np.full(10_000, 0.95))
    assert draws.min() >= -1.0 and draws.max() <= 1.0
    assert np.mean(draws < 0.95) > 0.5  # truncation at the top bound shifts mass down
    for _ in range(2):
        noise.reset()
    assert noise.sigma == 1.0
    noise.reset()
    assert noise.sigma == 0.5


def test_replay_buffer_credits_final_reward_and_subtracts_baseline():
    from gymnasium import spaces

    buf = EpisodeRewardReplayBuffer(
        100, spaces.Box(0, 1, (2,)), spaces.Box(-1, 1, (1,)), device="cpu", baseline_alpha=0.5
    )
    obs = np.zeros((1, 2), np.float32)
    act = np.zeros((1, 1), np.float32)
    for step in range(3):
        done = np.array([step == 2])
        reward = np.array([0.7 if step == 2 else 0.0], np.float32)
        buf.add(obs, obs, act, reward, done, [{}])
        assert buf.size() == (3 if step == 2 else 0)  # held back until the episode ends
    assert np.allclose(buf.rewards[:3, 0], 0.7)
    batch = buf.sample(3)
    assert np.allclose(batch.rewards.numpy(), 0.0)  # first baseline = first batch mean


def test_haq_ddpg_uses_separate_learning_rates():
    pr = problem()
    searcher = get_searcher("ddpg", warmup_episodes=1)
    searcher.run(pr, 3, seed=0)
    model = searcher.model
    assert isinstance(model, HAQDDPG)
    assert model.actor.optimizer.param_groups[0]["lr"] == 1e-4
    assert model.critic.optimizer.param_groups[0]["lr"] == 1e-3
    assert model.gamma == 1.0 and model.tau == 0.01 and model.batch_size == 64


# ------------------------------------------------------------------ search() and outputs
def test_search_api_writes_outputs_and_resumes(tmp_path):
    kw = dict(hardware="bismo-edge", budget=BUDGET, searcher="evolution", bits=(2, 5),
              pin="none", oracle=ORACLE, workload=TINY, progress=False, seed=4)  # fmt: skip
    full = search(episodes=30, out=tmp_path / "full", **kw)
    for name in ("policy.json", "history.csv", "pareto.csv", "policy.png", "pareto.png",
                 "search.png", "report.md", "run.json"):  # fmt: skip
        assert (tmp_path / "full" / name).exists(), name
    data = json.loads((tmp_path / "full" / "policy.json").read_text())
    assert set(data["layers"]) == set(TINY.names)
    assert data["summary"]["accuracy"] == full.best.accuracy
    assert data["summary"]["latency_s"] <= full.problem.enforcer.limit

    # A run stopped after 12 episodes, resumed to 30, equals the uninterrupted run.
    search(episodes=12, out=tmp_path / "part", **kw)
    calls = []
    resumed = search(episodes=30, out=tmp_path / "part", resume=True,
                     on_evaluation=lambda ev: calls.append(ev.seconds), **kw)  # fmt: skip
    assert len(read_history(tmp_path / "part" / "history.csv")) == 30
    assert [e.accuracy for e in resumed.history] == [e.accuracy for e in full.history]
    assert resumed.best.accuracy == full.best.accuracy
    assert resumed.problem.oracle_calls < 30 - 12 + len(resumed.uniform) + 1

    front = pareto_front([(e.cost, e.accuracy) for e in full.history])
    assert len(read_history(tmp_path / "full" / "pareto.csv")) == len(front)


def test_resume_refuses_other_settings(tmp_path):
    kw = dict(oracle=ORACLE, workload=TINY, progress=False, bits=(2, 5), pin="none")
    search(searcher="random", episodes=3, out=tmp_path, **kw)
    with pytest.raises(HaqsearchError, match="must use the earlier run's settings"):
        search(searcher="random", episodes=5, out=tmp_path, resume=True, seed=9, **kw)
    with pytest.raises(HaqsearchError, match="needs an earlier run"):
        search(searcher="random", episodes=5, out=tmp_path / "new", resume=True, **kw)


def test_search_bad_input():
    kw = dict(oracle=ORACLE, workload=TINY, progress=False, bits=(2, 5), pin="none")
    with pytest.raises(BudgetError, match="latency"):
        search(budget="latency=3kg", **kw)
    with pytest.raises(UnknownNameError, match="valid hardware presets are"):
        search(hardware="tpu-v9", **kw)
    with pytest.raises(HaqsearchError, match="episodes must be a positive integer"):
        search(episodes=0, **kw)
    with pytest.raises(HaqsearchError, match="one layer per quantizable layer"):
        search(workload=haqsim.zoo.resnet18(), oracle=NoiseProxyOracle(TINY), progress=False)
