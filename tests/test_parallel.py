"""parallel.at_once runs its jobs at the same time and hands back what each raised; Background re-raises on join."""

from __future__ import annotations

import _thread

import pytest

from boot2ipxe.parallel import Background, at_once


def test_jobs_run_at_the_same_time() -> None:
    """Each job waits for the other: run one after the other, they would time out."""
    first, second = _thread.allocate_lock(), _thread.allocate_lock()
    first.acquire()
    second.acquire()
    met: list[bool] = []

    def one() -> None:
        first.release()
        met.append(second.acquire(timeout=10))

    def two() -> None:
        met.append(first.acquire(timeout=10))
        second.release()

    assert at_once([one, two]) == [None, None]
    assert met == [True, True]


def test_every_job_finishes_and_each_error_is_handed_back() -> None:
    done: list[int] = []

    def fails() -> None:
        raise ValueError("lane 0")

    def works() -> None:
        done.append(1)

    errors = at_once([fails, works, works])
    assert isinstance(errors[0], ValueError) and errors[1:] == [None, None] and done == [1, 1]
    assert at_once([]) == []


def test_background_join_reraises() -> None:
    def fails() -> None:
        raise OSError("disk gone")

    job = Background(fails)
    with pytest.raises(OSError, match="disk gone"):
        job.join()
    ran: list[bool] = []
    Background(lambda: ran.append(True)).join()
    assert ran == [True]
