from __future__ import annotations

import operator
import time

import pytest

from permalloc.errors import SpecError
from permalloc.run.executor import Call, DaskExecutor, LocalExecutor, executor_for
from permalloc.run.timeout import RunTimeout


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_results_keyed_as_submitted(jobs):
    calls = [Call(("k", i), operator.mul, (i, 3), f"call {i}") for i in range(5)]
    assert dict(LocalExecutor(jobs).run(calls)) == {("k", i): 3 * i for i in range(5)}


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_timeout_names_the_call(jobs):
    calls = [Call(0, time.sleep, (0,), "quick"), Call(1, time.sleep, (30,), "sleepy")]
    started = time.monotonic()
    with pytest.raises(RunTimeout, match="^sleepy: still running after --timeout 0.5 s"):
        dict(LocalExecutor(jobs, timeout=0.5).run(calls))
    assert time.monotonic() - started < 10


def test_dask_timeout_names_the_oldest_call_going():
    executor = DaskExecutor("local:1", timeout=1)
    try:
        assert dict(executor.run([Call("a", operator.add, (1, 2), "add")])) == {"a": 3}
        with pytest.raises(RunTimeout, match="^sleepy: still running"):
            dict(executor.run([Call(1, time.sleep, (30,), "sleepy")]))
    finally:
        executor.close()


def test_local_cluster_workers_run_without_the_profiler_and_the_fast_tick():
    # both take the GIL from the run every 10-20 ms; the caller's config is untouched. The
    # workers run dask.config.get itself: a function of this test module is pickled by
    # reference, and a worker of an installed permalloc cannot import the tests
    import dask

    executor = DaskExecutor("local:1")
    try:
        for key, on_workers, here in (("distributed.worker.profile.enabled", False, True),
                                      ("distributed.admin.tick.interval", "1s", "20ms")):
            assert list(executor.client.run(dask.config.get, key).values()) == [on_workers]
            assert dask.config.get(key) == here
    finally:
        executor.close()


@pytest.mark.parametrize(("target", "message"), [("local:x", "local:N"), ("local:0", "local:N"), (" ", "scheduler")])
def test_bad_dask_targets_are_one_line(target, message):
    with pytest.raises(SpecError, match=message):
        executor_for(dask=target)


def test_an_unreachable_scheduler_is_one_line():
    with pytest.raises(SpecError, match="cannot reach the scheduler"):
        DaskExecutor("tcp://127.0.0.1:9")
