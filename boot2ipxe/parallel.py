"""Running a few jobs at once in threads, with ``_thread`` (``threading`` imports ``functools`` and ``collections``,
which a warm build has no other use for)."""

from __future__ import annotations

import _thread

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def at_once(jobs: Sequence[Callable[[], None]]) -> list[BaseException | None]:
    """Run every job at the same time, the first in this thread, and wait for all of them. Returns, per job, the
    exception it raised or None: every job has finished when this returns, whichever failed."""
    errors: list[BaseException | None] = [None] * len(jobs)
    done = [_thread.allocate_lock() for _ in jobs[1:]]

    def job(n: int, finished: _thread.LockType | None) -> None:
        try:
            jobs[n]()
        except BaseException as exc:  # handed to the caller
            errors[n] = exc
        finally:
            if finished is not None:
                finished.release()

    for n, finished in enumerate(done, start=1):
        finished.acquire()
        _thread.start_new_thread(job, (n, finished))
    if jobs:
        job(0, None)
    for finished in done:
        finished.acquire()
    return errors


class Background:
    """One job started in a thread now, waited for with :meth:`join` (which re-raises what it raised)."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._error: BaseException | None = None
        self._finished = _thread.allocate_lock()
        self._finished.acquire()
        _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self._error = exc
        finally:
            self._finished.release()

    def join(self) -> None:
        self._finished.acquire()
        self._finished.release()
        if self._error is not None:
            raise self._error
