"""The task pool that runs commands which may block: bounded, ordered, never blocking its caller."""

from __future__ import annotations

import gevent
import gevent.event

from gusher.edge.tasks import TaskPool


def test_tasks_run_in_the_order_scheduled() -> None:
    """FIFO: with one greenlet, tasks run exactly in scheduling order."""
    pool = TaskPool(1)
    ran: list[int] = []
    for i in range(5):
        pool.schedule(lambda i=i: ran.append(i))
    gevent.sleep(0.01)
    assert ran == [0, 1, 2, 3, 4]


def test_at_most_size_tasks_run_at_once_and_an_idle_pool_holds_no_greenlet() -> None:
    """However many tasks block, only `size` greenlets run them; all end when the queue is empty."""
    pool = TaskPool(3)
    running = [0]
    peak = [0]

    def task() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        gevent.sleep(0.01)
        running[0] -= 1

    for _ in range(20):
        pool.schedule(task)
    assert pool.greenlets == 3
    gevent.sleep(0)
    assert pool.queued == 17
    gevent.sleep(0.2)
    assert peak[0] == 3 and pool.queued == 0 and pool.greenlets == 0


def test_scheduling_from_the_event_loop_never_blocks() -> None:
    """The loop's callbacks (where reads arrive) may schedule work; it runs in the pool's greenlets."""
    pool = TaskPool(1)
    ran = gevent.event.Event()
    gevent.get_hub().loop.run_callback(pool.schedule, ran.set)
    assert ran.wait(1)


def test_a_waiting_task_lends_its_slot() -> None:
    """A task waiting for an event (no work) does not hold back the queue behind it."""
    pool = TaskPool(1)
    release = gevent.event.Event()
    order: list[str] = []

    def waiter() -> None:
        with pool.waiting():
            release.wait(1)
        order.append("waiter")

    pool.schedule(waiter)
    pool.schedule(lambda: order.append("other"))
    gevent.sleep(0.05)
    assert order == ["other"]
    release.set()
    gevent.sleep(0.05)
    assert order == ["other", "waiter"] and pool.greenlets == 0


def test_a_failing_task_costs_only_itself() -> None:
    """An exception is logged; the next task runs."""
    pool = TaskPool(1)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug")

    pool.schedule(broken)
    pool.schedule(lambda: ran.append("next"))
    gevent.sleep(0.01)
    assert ran == ["next"]
