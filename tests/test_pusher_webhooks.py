"""Channel occupancy across slave workers (gusher/broker/occupancy.py), against the session's
embedded Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_lib

from gusher.broker.occupancy import RedisOccupancy
from gusher.keys import OCCUPANCY_WORKERS, occupancy_key, worker_alive_key, worker_occupancy_key

# -- occupancy across slave workers (real Redis) --------------------------------------


@pytest.fixture
def occupancy(redis_client: redis_lib.Redis) -> Iterator[RedisOccupancy]:
    yield RedisOccupancy(redis_client)
    # Whatever a test left behind: its workers' records, listing and liveness.
    for raw in redis_client.smembers(OCCUPANCY_WORKERS):
        worker = int(raw)
        if worker >= _FIRST_TEST_WORKER:
            RedisOccupancy(redis_client).stop(worker, [])
            redis_client.delete(worker_alive_key(worker))


_FIRST_TEST_WORKER = 900_000_000


def _workers(n: int) -> list[int]:
    base = _FIRST_TEST_WORKER + uuid.uuid4().int % 1_000_000 * 100
    return [base + i for i in range(n)]


def _key(name: str) -> str:
    return f"occ-{uuid.uuid4().hex[:8]}@{name}"


def test_only_the_first_worker_to_occupy_a_channel_anywhere_is_told_so(occupancy: RedisOccupancy) -> None:
    """Two workers occupy one key: only the first gets True, and again is no news."""
    one, two = _workers(2)
    key = _key("news")
    assert occupancy.occupy(key, one) is True
    assert occupancy.occupy(key, two) is False
    assert occupancy.occupy(key, one) is False
    assert occupancy.is_occupied(key)


def test_only_the_last_worker_to_vacate_a_channel_is_told_so(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """The first to leave gets False, the last True; vacating again is False; nothing is left behind."""
    one, two = _workers(2)
    key = _key("news")
    occupancy.occupy(key, one)
    occupancy.occupy(key, two)
    assert occupancy.vacate(key, one) is False
    assert occupancy.vacate(key, two) is True
    assert occupancy.vacate(key, two) is False
    assert not occupancy.is_occupied(key)
    assert not redis_client.exists(occupancy_key(key), worker_occupancy_key(one), worker_occupancy_key(two))


def test_concurrent_workers_agree_on_one_first_and_one_last(occupancy: RedisOccupancy) -> None:
    """Twenty threads occupy and then vacate one key at once: exactly one True each way."""
    workers = _workers(20)
    key = _key("busy")
    barrier = threading.Barrier(len(workers))
    firsts: list[bool] = []
    lasts: list[bool] = []

    def run(worker: int) -> None:
        barrier.wait()
        firsts.append(occupancy.occupy(key, worker))
        barrier.wait()
        lasts.append(occupancy.vacate(key, worker))

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert firsts.count(True) == 1 and lasts.count(True) == 1


def test_a_lapsed_worker_is_swept_and_only_its_sole_channels_come_back_vacated(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """A worker whose liveness key is gone loses its channels: those it alone held are returned
    (send channel_vacated), a channel a live worker shares stays occupied, a live worker keeps its
    own; a second sweep finds nothing, and the lapsed worker is no longer listed."""
    live, dead, other = _workers(3)
    for worker in (live, other):
        redis_client.set(worker_alive_key(worker), b"1", px=60_000)
    sole, shared, others = _key("sole"), _key("shared"), _key("others")
    occupancy.occupy(sole, dead)
    occupancy.occupy(shared, live)
    occupancy.occupy(shared, dead)
    occupancy.occupy(others, other)
    swept = [k for k in occupancy.sweep(skip=live) if k in (sole, shared, others)]
    assert swept == [sole]
    assert not occupancy.is_occupied(sole) and occupancy.is_occupied(shared) and occupancy.is_occupied(others)
    assert not {sole, shared} & set(occupancy.sweep(skip=live))
    assert not redis_client.sismember(OCCUPANCY_WORKERS, str(dead))
    assert occupancy.vacate(shared, dead) is False  # it was swept: no second channel_vacated
    assert occupancy.vacate(shared, live) is True


def test_a_swept_worker_that_comes_back_restores_its_channels(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """After its liveness lapsed, `restore` occupies its keys again; those now occupied are returned."""
    (worker,) = _workers(1)
    key = _key("back")
    occupancy.occupy(key, worker)
    assert key in occupancy.sweep(skip=0)
    assert not occupancy.is_occupied(key)
    redis_client.set(worker_alive_key(worker), b"1", px=60_000)
    assert occupancy.restore(worker, [key]) == [key]
    assert occupancy.is_occupied(key) and key not in occupancy.sweep(skip=0)


def test_a_clean_stop_vacates_every_key_the_worker_held(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """`stop` returns the keys that became vacant (its sole ones), leaves shared ones occupied, and
    removes the worker's record and listing."""
    one, two = _workers(2)
    sole, shared = _key("sole"), _key("shared")
    occupancy.occupy(sole, one)
    occupancy.occupy(shared, one)
    occupancy.occupy(shared, two)
    assert occupancy.stop(one, [sole]) == [sole]  # `shared` came from its record
    assert occupancy.is_occupied(shared) and not occupancy.is_occupied(sole)
    assert not redis_client.exists(worker_occupancy_key(one))
    assert not redis_client.sismember(OCCUPANCY_WORKERS, str(one))
