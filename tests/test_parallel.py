"""Parallel accuracy evaluation: oracle pools in processes and Ray actors, batched searchers."""

from __future__ import annotations

import os
import sys
from collections import deque

import numpy as np
import pytest

import haqsim
from haqsearch import HaqsearchError, get_searcher, search
from haqsearch.cli import main as haq_main
from haqsearch.parallel import (
    RAY_MISSING,
    OracleReplica,
    ProcessOraclePool,
    TorchOracleSpec,
    make_pool,
)
from haqsearch.problem import SearchProblem
from haqsearch.report import read_history
from haqsearch.search import _oracle_factory
from haqsearch.searchers.ddpg import TruncatedNormalDecayNoise
from haqsearch.searchers.simple import EvolutionSearcher
from haqsim import LayerTable, conv, linear
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


def problem(pool=None) -> SearchProblem:
    pr = SearchProblem(TABLE, BUDGET, ORACLE, min_bits=2, max_bits=5)
    pr.pool = pool
    return pr


def history(pr: SearchProblem) -> list[tuple]:
    return [
        (e.index, e.w_bits.tolist(), e.a_bits.tolist(), e.accuracy, e.reward, e.limited, e.source)
        for e in pr.history
    ]


def random_policies(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(2, 6, 4), rng.integers(2, 6, 4)) for _ in range(n)]


class DyingOracle:
    """The proxy's accuracy; the first call that finds ``marker`` removes it and kills its
    process (``os.remove`` succeeds in exactly one worker)."""

    def __init__(self, marker: str, always: bool = False) -> None:
        self.marker, self.always = str(marker), always
        self.reference_accuracy = ORACLE.reference_accuracy

    def __call__(self, w_bits, a_bits) -> float:
        if self.always:
            os._exit(3)
        try:
            os.remove(self.marker)
        except FileNotFoundError:
            return ORACLE(w_bits, a_bits)
        os._exit(3)


def broken_factory():
    raise RuntimeError("no model on this node")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The workers use one thread each; so does the agent here (faster on a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool2():
    with ProcessOraclePool(OracleReplica(ORACLE), 2) as pool:
        yield pool


# ------------------------------------------------------------------ the pool
def test_pool_results_equal_serial_and_arrive_as_they_complete(pool2):
    policies = random_policies(9)
    arrived = []
    got = pool2.evaluate_many(policies, on_result=lambda i, acc, s: arrived.append((i, acc)))
    assert [acc for acc, _ in got] == [ORACLE(w, a) for w, a in policies]
    assert sorted(arrived) == [(i, got[i][0]) for i in range(9)]
    assert all(seconds >= 0 for _, seconds in got)
    assert pool2.evaluate(*policies[0])[0] == got[0][0]


def test_workers_are_separate_single_threaded_replicas(pool2):
    assert pool2.workers == 2
    assert len({i.pid for i in pool2.info} | {os.getpid()}) == 3
    for info in pool2.info:
        assert info.torch_threads == 1 and info.numba_threads == 1
    assert pool2.reference_accuracies == [ORACLE.reference_accuracy] * 2


def test_pool_arguments_are_checked():
    with pytest.raises(HaqsearchError, match="workers must be an integer >= 1, got 0"):
        ProcessOraclePool(OracleReplica(ORACLE), 0)
    with pytest.raises(HaqsearchError, match="start_method must be one of"):
        ProcessOraclePool(OracleReplica(ORACLE), 1, start_method="fork")


def test_replica_that_cannot_be_built_is_reported():
    with pytest.raises(HaqsearchError, match=r"worker 0 could not build .*no model on this node"):
        ProcessOraclePool(broken_factory, 1)


# ------------------------------------------------------------------ faults
def test_dead_worker_is_replaced_and_no_evaluation_is_lost(tmp_path):
    marker = tmp_path / "die-once"
    with ProcessOraclePool(OracleReplica(DyingOracle(str(marker))), 2) as pool:
        marker.touch()
        pr = problem(pool)
        get_searcher("random").run(pr, 10, seed=5)
        assert pool.restarts == 1
        assert not marker.exists()
    serial = problem()
    get_searcher("random").run(serial, 10, seed=5)
    assert history(pr) == history(serial)


def test_a_policy_that_always_kills_its_worker_fails_after_max_retries():
    with ProcessOraclePool(OracleReplica(DyingOracle("-", always=True)), 1, max_retries=1) as pool:
        with pytest.raises(HaqsearchError, match=r"max_retries=1 .* dead worker 2 times"):
            pool.evaluate(np.full(4, 3), np.full(4, 3))
        assert pool.restarts == 2


class FlakyPool:
    """Delivers results out of order, then is interrupted."""

    workers = 3

    def evaluate_many(self, policies, on_result=None):
        on_result(2, ORACLE(*policies[2]), 0.5)
        on_result(0, ORACLE(*policies[0]), 0.5)
        raise KeyboardInterrupt


def test_evaluate_many_records_in_order_and_keeps_results_when_interrupted():
    pr = problem(FlakyPool())
    proposals = random_policies(3, seed=1)
    with pytest.raises(KeyboardInterrupt):
        pr.evaluate_many(proposals, "x")
    enforced = [pr.enforce(w, a)[:2] for w, a in proposals]
    got = [(e.w_bits.tolist(), e.a_bits.tolist()) for e in pr.history]
    assert got == [(enforced[i][0].tolist(), enforced[i][1].tolist()) for i in (0, 2)]
    assert pr.oracle_calls == 2  # both cached: a resumed run does not measure them again


# ------------------------------------------------------------------ searchers
def test_random_search_with_two_workers_has_the_serial_history(pool2):
    parallel, serial = problem(pool2), problem()
    get_searcher("random").run(parallel, 13, seed=2)
    get_searcher("random").run(serial, 13, seed=2)
    assert len(parallel.history) == 13
    assert history(parallel) == history(serial)


def serial_evolution(pr, episodes, seed, population=20, sample=5):
    """The serial regularised evolution, step by step (the batched one with batch=1)."""
    helper = EvolutionSearcher(population, sample)
    rng = np.random.default_rng(seed)
    pop = deque()
    for step in range(episodes):
        if step < population:
            child = pr.evaluate(*pr.random_policy(rng), "evolution")
        else:
            contenders = [pop[int(i)] for i in rng.choice(len(pop), sample, False)]
            parent = max(contenders, key=lambda e: (e.reward, -e.cost))
            child = pr.evaluate(*helper._mutate(pr, parent, rng), "evolution")
            pop.popleft()
        pop.append(child)


def test_batched_evolution_with_batch_one_is_the_serial_algorithm():
    batched, serial = problem(), problem()
    EvolutionSearcher(batch=1).run(batched, 45, seed=3)
    serial_evolution(serial, 45, seed=3)
    assert history(batched) == history(serial)


def test_batched_evolution_depends_on_the_batch_not_on_the_workers(pool2):
    parallel, local = problem(pool2), problem()
    get_searcher("evolution").run(parallel, 31, seed=4)  # batch = problem.workers = 2
    EvolutionSearcher(batch=2).run(local, 31, seed=4)
    assert len(parallel.history) == 31
    assert history(parallel) == history(local)


def test_greedy_probes_in_parallel_give_the_serial_result(pool2):
    parallel, serial = problem(pool2), problem()
    get_searcher("greedy").run(parallel, 12, seed=0)
    get_searcher("greedy").run(serial, 12, seed=0)
    assert history(parallel) == history(serial)
    assert parallel.oracle_calls == serial.oracle_calls


@pytest.mark.parametrize(("name", "kwargs"), [("ddpg", {"warmup_episodes": 4}), ("sb3:PPO", {})])
def test_rl_with_two_envs_meets_the_episode_and_cost_budgets(pool2, name, kwargs):
    pr = problem(pool2)
    searcher = get_searcher(name, **kwargs)
    searcher.run(pr, 11, seed=0)  # odd: the last round measures one of the two episodes
    assert len(pr.history) == 11
    assert searcher.model.n_envs == 2
    if name == "ddpg":  # one generator for both envs (SB3 would copy it: identical draws)
        assert isinstance(searcher.model.action_noise, TruncatedNormalDecayNoise)
    assert pr.oracle_calls <= 11
    for ev in pr.history:
        assert pr.fits(ev.w_bits, ev.a_bits)
        assert ev.accuracy == ORACLE(ev.w_bits, ev.a_bits)


# ------------------------------------------------------------------ search() and the CLI
def test_search_with_workers_equals_one_worker(tmp_path):
    kw = dict(searcher="random", episodes=9, oracle=ORACLE, workload=TINY, bits=(2, 5),
              pin="none", budget=BUDGET, progress=False, seed=7)  # fmt: skip
    one = search(out=tmp_path / "one", **kw)
    two = search(out=tmp_path / "two", workers=2, **kw)
    assert [e.key() for e in two.history] == [e.key() for e in one.history]
    assert [e.accuracy for e in two.history] == [e.accuracy for e in one.history]
    assert two.uniform == one.uniform
    rows = read_history(tmp_path / "two" / "history.csv")
    assert [r["accuracy"] for r in rows] == [e.accuracy for e in one.history]
    with pytest.raises(HaqsearchError, match="workers must be a positive integer, got 0"):
        search(workers=0, **kw)


def test_workers_build_torch_replicas_by_name_and_anything_else_by_copy():
    spec = _oracle_factory("digits_cnn", None, None, ORACLE, False, finetune_steps=3, seed=2)
    assert spec == TorchOracleSpec("digits_cnn", finetune_steps=3, seed=2)
    assert _oracle_factory("digits_cnn", None, None, ORACLE, True) == OracleReplica(ORACLE)
    pair = ([], [])
    assert isinstance(_oracle_factory("m:f", None, pair, ORACLE, False), OracleReplica)


def test_ray_without_ray_installed_gives_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(HaqsearchError, match=r"--ray needs the optional dependency ray"):
        search(oracle=ORACLE, workload=TINY, ray=True, progress=False)
    with pytest.raises(HaqsearchError, match="pip install 'haqsim\\[ray\\]'"):
        make_pool(OracleReplica(ORACLE), 2, ray_address="auto")
    assert haq_main(["search", "--ray", "--quiet", "--episodes", "1"]) == 2
    assert RAY_MISSING in capsys.readouterr().err


# ------------------------------------------------------------------ real model, Ray
@pytest.mark.slow
def test_torch_replicas_give_the_serial_accuracies():
    spec = TorchOracleSpec("digits_cnn", finetune_steps=4, eval_batches=2, seed=1)
    serial = spec()  # loads (or trains and caches) the model before the workers need it
    policies = [(np.array([8, 4, 3, 8]), np.array([8, 3, 4, 8])), (np.full(4, 2), np.full(4, 3))]
    policies.append((np.array([6, 2, 5, 8]), np.array([8, 6, 2, 4])))
    with ProcessOraclePool(spec, 2) as pool:
        assert pool.reference_accuracies == [serial.reference_accuracy] * 2
        got = pool.evaluate_many(policies)
    assert [acc for acc, _ in got] == [serial(w, a) for w, a in policies]
    # A model given as a module travels as a pickled copy of the whole oracle.
    with ProcessOraclePool(OracleReplica(serial), 1) as pool:
        assert pool.evaluate(*policies[-1])[0] == got[-1][0]


@pytest.mark.slow
def test_cli_search_with_two_workers_on_the_digits_model(tmp_path, capsys):
    argv = ["search", "--model", "digits_cnn", "--searcher", "random", "--episodes", "3",
            "--finetune-steps", "2", "--workers", "2", "--quiet",
            "--out", str(tmp_path)]  # fmt: skip
    assert haq_main(argv) == 0
    assert "best policy" in capsys.readouterr().out
    rows = read_history(tmp_path / "history.csv")
    assert len(rows) == 3 and rows[0]["seconds"] > 0  # measured in a worker
    assert (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_ray_runs_a_search_and_replaces_a_dead_actor(tmp_path):
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    from haqsearch.parallel import RayOraclePool

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        kw = dict(searcher="random", episodes=8, oracle=ORACLE, workload=TINY, bits=(2, 5),
                  pin="none", budget=BUDGET, progress=False, seed=1)  # fmt: skip
        on_ray = search(workers=2, ray=True, **kw)
        local = search(**kw)
        assert [(e.key(), e.accuracy) for e in on_ray.history] == [
            (e.key(), e.accuracy) for e in local.history
        ]
        assert ray.is_initialized()  # the pool did not shut down a Ray it did not start

        marker = tmp_path / "die-once"
        with RayOraclePool(OracleReplica(DyingOracle(str(marker))), 2) as pool:
            assert pool.num_gpus_per_actor == 0.0
            marker.touch()
            policies = random_policies(6, seed=3)
            got = pool.evaluate_many(policies)
            assert pool.restarts == 1
        assert [acc for acc, _ in got] == [ORACLE(w, a) for w, a in policies]
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()
