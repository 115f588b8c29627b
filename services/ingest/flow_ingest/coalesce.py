"""Concurrent requests sharing calls, as a database groups commits.

A call to SNS or a database transaction costs about the same whether it carries one posting or
many, so ingest lets the postings of concurrent requests share them. Each request queues its
items and waits for their results. A full call's worth of queued items leaves at once; fewer leave
as soon as fewer than `max_in_flight` calls are under way. So a lone request is never kept waiting
for company, a big request's full calls go out side by side, and under load, items gather while
calls are under way.
"""

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(
        self, call: Callable[[list[Item]], Awaitable[list[Result]]], max_items: int, max_in_flight: int
    ) -> None:
        """`call` takes up to `max_items` items (of any requests) and returns one result per item."""
        self._call = call
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._queued: collections.deque[tuple[Item, asyncio.Future]] = collections.deque()
        self._calls: set[asyncio.Task] = set()  # referenced until done, so none is garbage-collected

    async def submit(self, items: list[Item]) -> list[Result]:
        """The results of `items`, in order; raises what a call carrying any of them raised."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._queued.extend(zip(items, futures, strict=True))
        self._start_calls()
        results: list[Result] = []
        for result in await asyncio.gather(*futures, return_exceptions=True):  # every one retrieved
            if isinstance(result, BaseException):
                raise result
            results.append(result)
        return results

    def _start_calls(self) -> None:
        while self._queued and (len(self._queued) >= self._max_items or self._in_flight < self._max_in_flight):
            entries = [self._queued.popleft() for _ in range(min(self._max_items, len(self._queued)))]
            self._in_flight += 1
            call = asyncio.create_task(self._run(entries))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _run(self, entries: list[tuple[Item, asyncio.Future]]) -> None:
        results: list | None = None
        failure: Exception | None = None
        try:
            results = await self._call([item for item, _ in entries])
        except Exception as exc:
            failure = exc
        finally:
            self._in_flight -= 1
            for n, (_, future) in enumerate(entries):
                if future.done():  # its request was cancelled meanwhile (the client went away)
                    continue
                if results is not None:
                    future.set_result(results[n])
                elif failure is not None:
                    future.set_exception(failure)
                else:  # the call itself was cancelled (the service is stopping)
                    future.cancel()
            self._start_calls()
