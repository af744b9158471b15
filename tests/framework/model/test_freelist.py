"""The sparse free list keeps the kernel's list order: head, runs, tail."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc.model.freelist import FreeList


def test_head_and_tail_order_like_list_add_and_list_add_tail():
    fl = FreeList()
    fl.add_tail(10)
    fl.add_head(5)
    fl.add_run(100, 4, 3)  # 100, 104, 108 at the tail
    fl.add_tail(7)
    assert list(fl) == [5, 10, 100, 104, 108, 7]
    assert fl.first() == 5 and len(fl) == 6


def test_removing_inside_a_run_splits_it():
    fl = FreeList()
    fl.add_run(0, 1024, 5)
    assert fl.remove(2048)
    assert list(fl) == [0, 1024, 3072, 4096]
    assert not fl.remove(2048) and not fl.contains(2048)


def test_a_run_freed_to_the_head_lists_in_reverse():
    fl = FreeList()
    fl.add_tail(1)
    fl.add_run(0, 1024, 3, head=True)  # freed 0, 1024, 2048 one after the other, each to the head
    assert list(fl) == [2048, 1024, 0, 1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["head", "tail", "run", "remove", "take"]), st.integers(0, 40)), max_size=40))
def test_matches_a_plain_list(ops):
    fl, ref = FreeList(), []
    next_pfn = 1000
    for op, value in ops:
        if op == "head":
            fl.add_head(next_pfn)
            ref.insert(0, next_pfn)
            next_pfn += 1
        elif op == "tail":
            fl.add_tail(next_pfn)
            ref.append(next_pfn)
            next_pfn += 1
        elif op == "run":
            count = value % 5 + 1
            fl.add_run(next_pfn, 1, count)
            ref.extend(range(next_pfn, next_pfn + count))
            next_pfn += count
        elif op == "remove" and ref:
            victim = ref[value % len(ref)]
            assert fl.remove(victim)
            ref.remove(victim)
        elif op == "take":
            run = fl.take_front_run(value % 3 + 1)
            if run is not None:
                taken = list(run.blocks())
                assert ref[: len(taken)] == taken
                del ref[: len(taken)]
        assert list(fl) == ref and len(fl) == len(ref) and fl.first() == (ref[0] if ref else None)
