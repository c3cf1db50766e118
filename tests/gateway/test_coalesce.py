"""Unit tests (in-process, no services) of the gateway's coalescing: who goes with whom, and
whose error reaches whom."""

from __future__ import annotations

import asyncio

import pytest

from amem.core.errors import InvalidArgument, Unavailable
from amem.gateway.commit import Coalescer


class Recorder:
    """A call that doubles its items, records each group it gets, and can be held open."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, key: str, items: list[int]) -> list[int]:
        self.groups.append(items)
        await self.gate.wait()
        if -1 in items:
            raise InvalidArgument("item -1 is refused")
        if -2 in items:
            raise Unavailable("the store is down")
        return [2 * i for i in items]


async def _held(call: Recorder, coalescer: Coalescer, first: list[int], rest: list[list[int]]):
    """Submit `first` with the call held open, then `rest` while it runs; release."""
    call.gate.clear()
    head = asyncio.create_task(coalescer.submit("k", first))
    await asyncio.sleep(0)  # the first call is running now
    tail = [asyncio.create_task(coalescer.submit("k", items)) for items in rest]
    await asyncio.sleep(0)
    call.gate.set()
    return await asyncio.gather(head, *tail, return_exceptions=True)


def test_calls_arriving_while_one_runs_go_together_and_each_gets_its_own_results():
    call = Recorder()
    coalescer = Coalescer(call, max_items=100)
    results = asyncio.run(_held(call, coalescer, [1], [[2, 3], [4], [5, 6, 7]]))
    assert results == [[2], [4, 6], [8], [10, 12, 14]]
    assert call.groups == [[1], [2, 3, 4, 5, 6, 7]]


def test_a_lone_call_waits_for_nothing_and_keys_do_not_mix():
    call = Recorder()
    coalescer = Coalescer(call, max_items=100)

    async def both():
        return await asyncio.gather(coalescer.submit("a", [1]), coalescer.submit("b", [2]))

    assert asyncio.run(both()) == [[2], [4]]
    assert call.groups == [[1], [2]]


def test_groups_stop_at_max_items_but_a_larger_call_still_goes_alone():
    call = Recorder()
    coalescer = Coalescer(call, max_items=3)
    results = asyncio.run(_held(call, coalescer, [0], [[1, 2], [3, 4], [5, 6, 7, 8], [9]]))
    assert results == [[0], [2, 4], [6, 8], [10, 12, 14, 16], [18]]
    assert call.groups == [[0], [1, 2], [3, 4], [5, 6, 7, 8], [9]]


def test_an_isolated_error_is_retried_per_caller_and_reaches_only_its_own():
    call = Recorder()
    coalescer = Coalescer(call, max_items=100, isolate=(InvalidArgument,))
    results = asyncio.run(_held(call, coalescer, [1], [[2], [-1], [3]]))
    assert results[:2] == [[2], [4]] and results[3] == [6]
    assert isinstance(results[2], InvalidArgument)
    assert call.groups == [[1], [2, -1, 3], [2], [-1], [3]]


def test_any_other_error_reaches_every_caller_of_the_group_and_the_next_group_still_runs():
    call = Recorder()
    coalescer = Coalescer(call, max_items=100, isolate=(InvalidArgument,))
    results = asyncio.run(_held(call, coalescer, [-2], [[1], [2]]))
    assert isinstance(results[0], Unavailable)
    assert results[1:] == [[2], [4]]

    call = Recorder()  # a new event loop: a new gate
    coalescer = Coalescer(call, max_items=100, isolate=(InvalidArgument,))
    results = asyncio.run(_held(call, coalescer, [0], [[1], [-2]]))
    assert results[0] == [0]
    assert all(isinstance(r, Unavailable) for r in results[1:])


def test_a_caller_that_gives_up_does_not_cancel_the_call_for_the_others():
    call = Recorder()
    coalescer = Coalescer(call, max_items=100)

    async def run():
        call.gate.clear()
        first = asyncio.create_task(coalescer.submit("k", [1]))
        await asyncio.sleep(0)
        quitter = asyncio.create_task(coalescer.submit("k", [2]))
        stayer = asyncio.create_task(coalescer.submit("k", [3]))
        await asyncio.sleep(0)
        quitter.cancel()
        call.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        return await first, await stayer

    assert asyncio.run(run()) == ([2], [6])
