"""Where independent runs execute: this process, a pool of local processes, or a Dask cluster.

A run is a plain function call whose arguments and result are small pydantic models (a
scenario, a spec, a policy, a workload's header; a :class:`PolicyResult`), so any executor
can carry it. Every run builds its own machine from its own spec and seed, so the results do
not depend on the executor, the number of workers or the order in which runs finish; the
caller gets them keyed as it submitted them.

* :class:`LocalExecutor` (``--jobs N``): N = 1 runs in this process (``--timeout`` by
  ``SIGALRM``); more runs in a pebble process pool whose workers die with this process and
  whose overrunning task is killed.
* :class:`DaskExecutor` (``--dask ADDRESS`` or ``--dask local[:N]``): submits to a
  ``distributed`` scheduler, or starts a ``LocalCluster`` of N single-threaded worker
  processes (its dashboard address is printed). When no run has finished for ``--timeout``
  seconds the batch stops, naming the oldest run still going, and what is left is cancelled.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol

from permalloc.errors import PermallocError, SpecError
from permalloc.run.timeout import die_with_parent, expired, time_limit


@dataclass(frozen=True)
class Call:
    """One run: ``fn(*args)``, known to the caller as ``key`` and named in errors as ``label``."""

    key: Hashable
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str = field(default="")


class Executor(Protocol):
    """Runs calls and yields ``(key, result)`` as each finishes; a failed call raises."""

    name: str

    def run(self, calls: Sequence[Call]) -> Iterator[tuple[Hashable, Any]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """This process (``jobs`` = 1) or ``jobs`` local worker processes."""

    def __init__(self, jobs: int = 1, timeout: float | None = None) -> None:
        self.jobs = jobs
        self.timeout = timeout
        self.name = "in-process" if jobs <= 1 else f"{jobs} local processes"

    def run(self, calls: Sequence[Call]) -> Iterator[tuple[Hashable, Any]]:
        if self.jobs <= 1 or len(calls) <= 1:
            for call in calls:
                with time_limit(self.timeout, call.label):
                    result = call.fn(*call.args)
                yield call.key, result
            return
        from pebble import ProcessPool

        pool = ProcessPool(max_workers=min(self.jobs, len(calls)), initializer=die_with_parent,
                           initargs=[os.getpid()])
        try:
            futures = {pool.schedule(call.fn, args=list(call.args), timeout=self.timeout): call for call in calls}
            for future in as_completed(futures):
                call = futures[future]
                try:
                    result = future.result()
                except FutureTimeout:
                    raise expired(call.label, self.timeout or 0) from None
                yield call.key, result
        finally:
            pool.stop()  # a failed or interrupted batch kills the workers still running
            pool.join()

    def close(self) -> None:
        pass


def _dask_target(target: str) -> tuple[str | None, int]:
    """``local`` / ``local:N`` (a LocalCluster of N workers; N defaults to the CPU count) or a
    scheduler address (``tcp://host:8786``, ``host:8786``)."""
    if target == "local" or target.startswith("local:"):
        count = target.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise SpecError(f"--dask {target}: local:N needs a whole number of workers of at least 1")
        return None, int(count)
    if not target.strip():
        raise SpecError("--dask: give a scheduler address (tcp://HOST:PORT) or local[:N]")
    return target, 0


LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s"}


_SMALL = (str, bytes, int, float, bool, type(None))  # arguments cheaper to send than to share


def _apply(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A call, as a Dask worker runs it (shared arguments resolved from the worker's memory)."""
    return fn(*args)


class DaskExecutor:
    """Runs on a Dask ``distributed`` cluster: an existing scheduler or a LocalCluster started here."""

    def __init__(self, target: str, timeout: float | None = None, on_start: Callable[[str], None] | None = None
                 ) -> None:
        address, workers = _dask_target(target)
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is an install requirement
            raise SpecError(f"--dask: the distributed package cannot be imported ({exc})") from None
        self.timeout = timeout
        self.cluster = None
        try:
            if address is None:
                # one thread per worker process: runs are CPU-bound Python (the GIL); the
                # dashboard on any free port. A worker's event loop takes the GIL from the run
                # for its statistical profiler (a stack sample every 10 ms: ~6 % of a run's
                # wall time, so it is off and the dashboard's Profile tab empty) and for the
                # tick that only measures the loop's own latency (every 20 ms: ~3 %; 1 s here).
                # Its logs are silenced: a run's error comes back through its future (one line),
                # and a worker's heartbeat that meets the closing scheduler is no error of ours
                with dask.config.set(LOCAL_WORKER_CONFIG):
                    self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=":0", silence_logs=logging.CRITICAL)
                self.client = Client(self.cluster)
                self.name = f"Dask LocalCluster of {workers} workers"
            else:
                self.client = Client(address, timeout="10s")
                self.name = f"Dask scheduler {address}"
        except (OSError, TimeoutError) as exc:
            self.close()
            raise SpecError(f"--dask {target}: cannot reach the scheduler: {' '.join(str(exc).split())}") from None
        if on_start is not None:
            on_start(f"{self.name}; dashboard {self.client.dashboard_link}")

    def run(self, calls: Sequence[Call]) -> Iterator[tuple[Hashable, Any]]:
        # one graph update for the whole batch (a submit per run costs the scheduler a message
        # each); an argument that several runs share (a sweep's scenario) goes to each worker
        # once, not unpickled again for every run (~2 ms each); each future says when it is
        # done through a queue, so that a finished run costs O(1) here, where
        # distributed.wait costs O(futures) per call
        uses = Counter(id(arg) for call in calls for arg in call.args if not isinstance(arg, _SMALL))
        many = list({id(arg): arg for call in calls for arg in call.args if uses[id(arg)] > 1}.values())
        shared = dict(zip(map(id, many), self.client.scatter(many, broadcast=True, hash=False) if many else []))
        futures = self.client.map(_apply, [call.fn for call in calls],
                                  [tuple(shared.get(id(arg), arg) for arg in call.args) for call in calls], pure=False)
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index, future in enumerate(futures):
            future.add_done_callback(lambda _, index=index: finished.put(index))
        seen = [False] * len(futures)
        try:
            for _ in futures:
                try:
                    index = finished.get(timeout=self.timeout)
                except queue.Empty:  # no run finished for --timeout seconds: name the oldest still going
                    raise expired(calls[seen.index(False)].label, self.timeout or 0) from None
                seen[index] = True
                yield calls[index].key, self._result(futures[index], calls[index])
        finally:
            self.client.cancel(futures)

    @staticmethod
    def _result(future: Any, call: Call) -> Any:
        from distributed.scheduler import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:  # the worker died (killed, out of memory) running it
            raise PermallocError(f"{call.label}: the Dask worker running it died ({exc})") from None

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()


def executor_for(jobs: int = 1, dask: str | None = None, timeout: float | None = None,
                 on_start: Callable[[str], None] | None = None) -> Executor:
    """The executor ``--jobs`` / ``--dask`` ask for."""
    if dask is not None:
        return DaskExecutor(dask, timeout, on_start)
    return LocalExecutor(jobs, timeout)
