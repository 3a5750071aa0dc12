"""Accuracy evaluation in parallel: a pool of oracle replicas in local processes or Ray actors.

In a real search nearly all the time goes to the accuracy oracle (quantize, fine-tune, validate);
the cost model takes microseconds. An :class:`OraclePool` holds ``workers`` replicas of the oracle,
each in its own process (:class:`ProcessOraclePool`, on :mod:`concurrent.futures`) or Ray actor
(:class:`RayOraclePool`, so the same search runs on a cluster), and evaluates that many policies at
once. :class:`~haqsearch.problem.SearchProblem` sends its uncached policies to the pool attached as
``problem.pool``; the searchers only propose batches.

Replicas: a worker builds its oracle from a picklable *oracle factory*, a zero-argument callable:
:class:`TorchOracleSpec` (a model by name, data by ``module:function``: every worker loads its own
copy, nothing large is shipped) or :class:`OracleReplica` (ships a pickled copy of one oracle, e.g.
a model given as an ``nn.Module``, or the torch-free :class:`haqsim.proxy.NoiseProxyOracle`).
:class:`~haqsearch.accuracy.TorchAccuracyOracle` measures every policy under its own seed, so a
replica gives the same accuracy as the parent's oracle on the same device with the same number of
torch threads. With another thread count torch's CPU kernels round differently, and the short
fine-tune amplifies that, at low bitwidths by up to several accuracy points (0.07 seen on
``digits_mobilenet``): workers use one thread each, so a one-worker run reproduces them exactly
when torch is limited to one thread too (``torch.set_num_threads(1)``).

Faults: a worker process or actor that dies while evaluating (``BrokenProcessPool``,
``RayActorError``) is replaced by a fresh one and the policy is evaluated again, up to
``max_retries`` times per policy; results already delivered are never lost.

Threads: each worker limits torch, Numba and OpenMP/BLAS to ``threads_per_worker`` threads (1 by
default), so ``N`` workers on ``N`` cores do not oversubscribe them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

from haqsearch.errors import HaqsearchError
from haqsim.oracle import AccuracyOracle

__all__ = [
    "RAY_MISSING",
    "OracleFactory",
    "OraclePool",
    "OracleReplica",
    "ProcessOraclePool",
    "RayOraclePool",
    "TorchOracleSpec",
    "WorkerInfo",
    "limit_threads",
    "make_pool",
    "require_ray",
]

#: The message of the error raised when Ray is asked for and not installed.
RAY_MISSING = "--ray needs the optional dependency ray: pip install 'haqsim[ray]'"

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
Policy = tuple[np.ndarray, np.ndarray]
ResultCallback = Callable[[int, float, float], None]


# ---------------------------------------------------------------------------------- factories
@runtime_checkable
class OracleFactory(Protocol):
    """A picklable zero-argument callable that builds an accuracy oracle in a worker."""

    def __call__(self) -> AccuracyOracle: ...


@attrs.frozen
class OracleReplica:
    """An oracle factory that ships a pickled copy of one oracle to each worker.

    Every worker unpickles its own copy, so the replicas share nothing. In the process that holds
    the original, calling the factory returns the original itself.

    Attributes:
        oracle: Any picklable oracle (a ``TorchAccuracyOracle`` carries its model and data).
    """

    oracle: AccuracyOracle

    def __call__(self) -> AccuracyOracle:
        return self.oracle


@attrs.frozen
class TorchOracleSpec:
    """An oracle factory that builds a :class:`~haqsearch.accuracy.TorchAccuracyOracle` in place.

    Only names travel; each worker loads the model and data itself (see
    :func:`haqsearch.search.load_model`). On a cluster, ``model``, ``data`` and ``weights`` must
    resolve on every node (same installed packages, a shared or copied weights file).

    Attributes:
        model: A built-in model name (``"digits_cnn"``) or ``"module:factory"``.
        weights: State-dict file for a ``module:factory`` model.
        data: ``"module:function"`` returning ``(train, val)`` batch iterables.
        finetune_steps, eval_batches, lr, seed, device: As for ``TorchAccuracyOracle``.
    """

    model: str
    weights: str | None = None
    data: str | None = None
    finetune_steps: int = 20
    eval_batches: int | None = None
    lr: float = 1e-2
    seed: int = 0
    device: str = "auto"

    def __call__(self) -> AccuracyOracle:
        from haqsearch.accuracy import TorchAccuracyOracle
        from haqsearch.search import load_model

        net, train, val, _ = load_model(self.model, self.weights, self.data)
        return TorchAccuracyOracle(
            net,
            train,
            val,
            self.finetune_steps,
            self.eval_batches,
            lr=self.lr,
            seed=self.seed,
            device=self.device,
        )


# ---------------------------------------------------------------------------------- worker side
def limit_threads(threads: int) -> None:
    """Limit this process's torch, Numba and OpenMP/BLAS threads to ``threads``.

    Sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (for anything
    started or imported later), ``torch.set_num_threads`` and ``set_num_interop_threads`` (when
    torch is installed) and ``numba.set_num_threads`` (capped at ``NUMBA_NUM_THREADS``).
    """
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(threads)
        # Only settable before the first inter-op parallel work.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


@attrs.frozen
class WorkerInfo:
    """What a worker reports once its replica is built.

    Attributes:
        pid: Process id (on its node, for Ray).
        reference_accuracy: The replica's reference accuracy (should equal the parent's).
        torch_threads: ``torch.get_num_threads()`` in the worker (0 without torch).
        numba_threads: ``numba.get_num_threads()`` in the worker.
        device: Where the replica runs (``"cpu"``, ``"cuda"``...; ``"-"`` if it does not say).
    """

    pid: int
    reference_accuracy: float
    torch_threads: int
    numba_threads: int
    device: str


class _Worker:
    """The oracle replica of one worker process or actor, built on first use."""

    def __init__(self, factory: OracleFactory, threads: int) -> None:
        limit_threads(threads)
        self.factory = factory
        self.oracle: AccuracyOracle | None = None

    def get(self) -> AccuracyOracle:
        if self.oracle is None:
            self.oracle = self.factory()
        return self.oracle

    def info(self) -> WorkerInfo:
        import numba

        oracle = self.get()
        try:
            import torch

            torch_threads = torch.get_num_threads()
        except ImportError:
            torch_threads = 0
        return WorkerInfo(
            os.getpid(),
            float(oracle.reference_accuracy),
            torch_threads,
            numba.get_num_threads(),
            str(getattr(oracle, "device", "-")),
        )

    def evaluate(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
        oracle = self.get()
        start = time.perf_counter()
        acc = float(oracle(np.asarray(w_bits, np.int64), np.asarray(a_bits, np.int64)))
        return acc, time.perf_counter() - start


_PROCESS_WORKER: _Worker | None = None


def _process_init(factory: OracleFactory, threads: int) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = _Worker(factory, threads)


def _process_info() -> WorkerInfo:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.info()


def _process_evaluate(w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.evaluate(w_bits, a_bits)


class _RayActor(_Worker):
    """The Ray actor class (wrapped with ``ray.remote`` when a pool starts)."""

    def ready(self) -> WorkerInfo:
        return self.info()


# ---------------------------------------------------------------------------------- slots
class _Slot(Protocol):
    """One worker: evaluates one policy at a time; can be replaced when it dies."""

    died: tuple[type[BaseException], ...]

    def info(self) -> WorkerInfo: ...

    def evaluate(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]: ...

    def restart(self) -> None: ...

    def close(self, terminate: bool) -> None: ...


class _ProcessSlot:
    """One worker process: a single-process ``ProcessPoolExecutor``, so a death breaks only it."""

    died = (BrokenProcessPool,)

    def __init__(self, factory: OracleFactory, threads: int, context: Any) -> None:
        self._args = (factory, threads)
        self._context = context
        self._start()

    def _start(self) -> None:
        self._executor = cf.ProcessPoolExecutor(
            1, mp_context=self._context, initializer=_process_init, initargs=self._args
        )
        self._info = self._executor.submit(_process_info)  # builds the replica at once

    def info(self) -> WorkerInfo:
        return self._info.result()

    def evaluate(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
        return self._executor.submit(_process_evaluate, w_bits, a_bits).result()

    def restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._start()

    def close(self, terminate: bool) -> None:
        if terminate and self._info.done() and self._info.exception() is None:
            with contextlib.suppress(OSError):
                os.kill(self._info.result().pid, signal.SIGTERM)
        self._executor.shutdown(wait=not terminate, cancel_futures=True)


class _RaySlot:
    """One Ray actor holding a replica."""

    def __init__(
        self, ray: Any, actor: Any, factory: OracleFactory, threads: int, gpus: float
    ) -> None:
        self.died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
        self._ray, self._cls = ray, actor
        self._args = (factory, threads)
        self._options = {"num_cpus": threads, "num_gpus": gpus}
        self._start()

    def _start(self) -> None:
        self._actor = self._cls.options(**self._options).remote(*self._args)
        self._info = self._actor.ready.remote()

    def info(self) -> WorkerInfo:
        return self._ray.get(self._info)

    def evaluate(self, w_bits: np.ndarray, a_bits: np.ndarray) -> tuple[float, float]:
        return self._ray.get(self._actor.evaluate.remote(w_bits, a_bits))

    def restart(self) -> None:
        self._ray.kill(self._actor, no_restart=True)
        self._start()

    def close(self, terminate: bool) -> None:
        self._ray.kill(self._actor, no_restart=True)


# ---------------------------------------------------------------------------------- pools
class OraclePool:
    """``workers`` oracle replicas that evaluate policies concurrently.

    :meth:`evaluate` is blocking and thread-safe (any number of threads may call it; each call
    takes a free worker); :meth:`evaluate_many` runs a list of policies on all workers and
    reports each result as it arrives. Use the subclasses, or :func:`make_pool`.

    Attributes:
        workers: Number of replicas.
        threads_per_worker: Threads each replica may use.
        max_retries: Times a policy is evaluated again after its worker died.
        restarts: Workers replaced so far.
        info: One :class:`WorkerInfo` per worker, as reported when it started.
    """

    kind = "pool"

    def __init__(self, slots: list[_Slot], threads_per_worker: int, max_retries: int) -> None:
        self._slots = slots
        self.workers = len(slots)
        self.threads_per_worker = threads_per_worker
        self.max_retries = max_retries
        self.restarts = 0
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._threads = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="haq-pool")
        self._closed = False
        try:
            self.info = [self._started(i, slot) for i, slot in enumerate(slots)]
        except BaseException:
            self.close(terminate=True)
            raise
        for slot in slots:
            self._idle.put(slot)

    def _started(self, index: int, slot: _Slot) -> WorkerInfo:
        try:
            return slot.info()
        except Exception as exc:
            raise HaqsearchError(
                f"{self.kind} worker {index} could not build its oracle replica: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @property
    def reference_accuracies(self) -> list[float]:
        """Each replica's reference accuracy."""
        return [i.reference_accuracy for i in self.info]

    def evaluate(self, w_bits: Any, a_bits: Any) -> tuple[float, float]:
        """``(accuracy, oracle seconds)`` of one policy on the next free worker.

        A worker that dies meanwhile is replaced and the policy evaluated again.

        Raises:
            HaqsearchError: If the pool is closed, or the policy's worker died more than
                ``max_retries`` times.
        """
        if self._closed:
            raise HaqsearchError(f"{self.kind} oracle pool must be open to evaluate, got closed")
        w = np.asarray(w_bits, np.int64)
        a = np.asarray(a_bits, np.int64)
        slot = self._idle.get()
        try:
            for _ in range(self.max_retries + 1):
                try:
                    return slot.evaluate(w, a)
                except slot.died as exc:
                    if self._closed:  # killed by close(terminate=True): nothing to replace
                        raise HaqsearchError(
                            f"{self.kind} oracle pool was closed during an evaluation"
                        ) from exc
                    last = exc
                    with self._lock:
                        self.restarts += 1
                    slot.restart()
            raise HaqsearchError(
                f"policy w_bits={w.tolist()} a_bits={a.tolist()} must be evaluated within "
                f"max_retries={self.max_retries} worker restarts, got a dead worker "
                f"{self.max_retries + 1} times (last: {type(last).__name__}: {last})"
            )
        finally:
            self._idle.put(slot)

    def evaluate_many(
        self, policies: Sequence[Policy], on_result: ResultCallback | None = None
    ) -> list[tuple[float, float]]:
        """``(accuracy, oracle seconds)`` of each policy, in order, evaluated on all workers.

        Args:
            policies: ``(w_bits, a_bits)`` pairs.
            on_result: Called in the calling thread as ``on_result(index, accuracy, seconds)``
                as soon as each result arrives (completion order), e.g. to record it at once.
        """
        futures = {
            self._threads.submit(self.evaluate, w, a): i for i, (w, a) in enumerate(policies)
        }
        out: list[tuple[float, float]] = [(0.0, 0.0)] * len(futures)
        try:
            for fut in cf.as_completed(futures):
                i = futures[fut]
                out[i] = fut.result()
                if on_result is not None:
                    on_result(i, *out[i])
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return out

    def close(self, terminate: bool = False) -> None:
        """Stop the workers (``terminate``: at once, abandoning evaluations in flight)."""
        if self._closed:
            return
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        for slot in self._slots:
            try:
                slot.close(terminate)
            except Exception as exc:  # a worker that is already gone
                warnings.warn(f"closing a {self.kind} worker failed: {exc}", stacklevel=2)

    def __enter__(self) -> OraclePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(terminate=exc[0] is not None)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workers={self.workers}, threads_per_worker="
            f"{self.threads_per_worker}, restarts={self.restarts})"
        )


def _check_counts(workers: int, threads_per_worker: int, max_retries: int) -> None:
    for name, value, low in (
        ("workers", workers, 1),
        ("threads_per_worker", threads_per_worker, 1),
        ("max_retries", max_retries, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise HaqsearchError(f"oracle pool {name} must be an integer >= {low}, got {value!r}")


class ProcessOraclePool(OraclePool):
    """Oracle replicas in local worker processes.

    Each worker is a one-process :class:`concurrent.futures.ProcessPoolExecutor`, so a worker that
    dies breaks only its own executor, which is replaced. The factory is pickled once per worker
    (standard pickle: define custom oracles in an importable module).

    Args:
        factory: Builds each worker's oracle (:class:`TorchOracleSpec`, :class:`OracleReplica`).
        workers: Number of processes.
        threads_per_worker: Threads each may use (torch, Numba, OpenMP).
        start_method: ``"forkserver"`` (default where available: workers fork from a clean server
            that has imported haqsearch, so they start fast and never inherit threads) or
            ``"spawn"``.
        max_retries: Times a policy is evaluated again after its worker died.
    """

    kind = "process"

    def __init__(
        self,
        factory: OracleFactory,
        workers: int,
        *,
        threads_per_worker: int = 1,
        start_method: str | None = None,
        max_retries: int = 3,
    ) -> None:
        _check_counts(workers, threads_per_worker, max_retries)
        methods = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in ("forkserver", "spawn") or start_method not in methods:
            usable = [m for m in ("forkserver", "spawn") if m in methods]
            raise HaqsearchError(
                f"process pool start_method must be one of {usable}, got {start_method!r}"
            )
        context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            context.set_forkserver_preload(["haqsearch.parallel"])
        slots: list[_Slot] = [
            _ProcessSlot(factory, threads_per_worker, context) for _ in range(workers)
        ]
        super().__init__(slots, threads_per_worker, max_retries)


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        HaqsearchError: If Ray is not installed (:data:`RAY_MISSING`).
    """
    try:
        import ray
    except ImportError:
        raise HaqsearchError(RAY_MISSING) from None
    return ray


class RayOraclePool(OraclePool):
    """Oracle replicas in Ray actors, on a local Ray instance or a cluster.

    Each actor asks for ``threads_per_worker`` CPUs and, when the cluster has GPUs, a GPU
    (``num_gpus_per_actor``; by default 1, or an equal share when there are fewer GPUs than
    actors); a :class:`TorchOracleSpec` replica then runs on it (``device="auto"``). An actor
    that dies is killed for good and replaced by a new one. On a cluster, every node needs
    haqsearch installed (and the model and data that the factory names).

    Args:
        factory: Builds each actor's oracle (pickled with cloudpickle).
        workers: Number of actors.
        address: Cluster address (``"auto"``, ``"ray://host:10001"``...); ``None`` starts a local
            instance, unless Ray is already initialised in this process.
        threads_per_worker: CPUs (and threads) per actor.
        num_gpus_per_actor: GPUs per actor; ``None`` chooses from the cluster's resources.
        max_retries: Times a policy is evaluated again after its actor died.

    Raises:
        HaqsearchError: If Ray is not installed.
    """

    kind = "ray"

    def __init__(
        self,
        factory: OracleFactory,
        workers: int,
        *,
        address: str | None = None,
        threads_per_worker: int = 1,
        num_gpus_per_actor: float | None = None,
        max_retries: int = 3,
    ) -> None:
        _check_counts(workers, threads_per_worker, max_retries)
        ray = require_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                cpus = max(workers * threads_per_worker, os.cpu_count() or 1)
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address)
            self._owns_ray = True
        if num_gpus_per_actor is None:
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            num_gpus_per_actor = min(1.0, gpus / workers) if gpus > 0 else 0.0
        self.num_gpus_per_actor = float(num_gpus_per_actor)
        actor = ray.remote(_RayActor)
        try:
            slots: list[_Slot] = [
                _RaySlot(ray, actor, factory, threads_per_worker, self.num_gpus_per_actor)
                for _ in range(workers)
            ]
            super().__init__(slots, threads_per_worker, max_retries)
        except BaseException:
            self._shutdown()
            raise

    def _shutdown(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    def close(self, terminate: bool = False) -> None:
        """Kill the actors; shut Ray down if this pool started it."""
        super().close(terminate)
        self._shutdown()


def make_pool(
    factory: OracleFactory,
    workers: int,
    *,
    ray: bool = False,
    ray_address: str | None = None,
    threads_per_worker: int = 1,
    max_retries: int = 3,
) -> OraclePool:
    """A :class:`RayOraclePool` when ``ray`` or ``ray_address`` is given, else a
    :class:`ProcessOraclePool`, of ``workers`` replicas built by ``factory``."""
    if ray or ray_address is not None:
        return RayOraclePool(
            factory,
            workers,
            address=ray_address,
            threads_per_worker=threads_per_worker,
            max_retries=max_retries,
        )
    return ProcessOraclePool(
        factory, workers, threads_per_worker=threads_per_worker, max_retries=max_retries
    )
