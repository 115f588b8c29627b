"""Waiting for what another process does (a server coming up, a callback, a queue draining, a replica
replaying): poll until it holds, and fail saying what was awaited and what was last seen if it does not
hold in time."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["wait_until", "wait_until_async"]

T = TypeVar("T")
Errors = type[BaseException] | tuple[type[BaseException], ...]


def wait_until(probe: Callable[[], T], what: str, timeout: float, *, holds: Callable[[T], object] = bool,
               interval: float = 0.2, ignoring: Errors = (), describe: Callable[[T], object] = repr) -> T:
    """Calls `probe` until `holds` is true of its answer, and returns that answer. After `timeout`
    seconds, fails naming `what` was awaited, with the last answer as `describe` shows it (called only
    then: it may be costly, or block, like reading a process's output). A probe that raises one of
    `ignoring` (a server not listening yet) counts as not yet; anything else it raises, an assertion of
    its own included, ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        value, error = None, None
        try:
            value = probe()
        except ignoring as raised:
            error = raised
        else:
            if holds(value):
                return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout, repr(error) if error is not None else describe(value)))
        time.sleep(interval)


async def wait_until_async(probe: Callable[[], T | Awaitable[T]], what: str, timeout: float, *,
                           holds: Callable[[T], object] = bool, interval: float = 0.2, ignoring: Errors = (),
                           describe: Callable[[T], object] = repr) -> T:
    """`wait_until` in an event loop: `probe` may be a coroutine function, and the loop runs on while
    waiting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value, error = None, None
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
        except ignoring as raised:
            error = raised
        else:
            if holds(value):
                return value
        if loop.time() >= deadline:
            raise AssertionError(_timed_out(what, timeout, repr(error) if error is not None else describe(value)))
        await asyncio.sleep(interval)


def _timed_out(what: str, timeout: float, last: object) -> str:
    return f"waited {timeout:g} s for {what}; last seen: {last}"
