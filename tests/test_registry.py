"""The per-worker channel registry (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gusher.core.patterns import is_allowed
from gusher.core.registry import Registry


def test_first_and_last_subscriber_are_reported() -> None:
    """subscribe says when Redis must SUBSCRIBE, unsubscribe when it must UNSUBSCRIBE."""
    registry: Registry[str] = Registry()
    assert registry.subscribe("a@c", "conn1") is True
    assert registry.subscribe("a@c", "conn2") is False
    assert set(registry.subscribers("a@c")) == {"conn1", "conn2"}
    assert registry.unsubscribe("a@c", "conn1") is False
    assert registry.unsubscribe("a@c", "conn1") is False  # not subscribed any more
    assert registry.unsubscribe("a@c", "conn2") is True
    assert registry.subscribers("a@c") == ()
    assert not registry.has_subscribers("a@c")


def test_detach_returns_emptied_channels() -> None:
    """Dropping a connection reports the channels nobody else wants."""
    registry: Registry[str] = Registry()
    registry.subscribe("a@x", "c1")
    registry.subscribe("a@y", "c1")
    registry.subscribe("a@y", "c2")
    assert registry.detach("c1") == ["a@x"]
    assert registry.subscription_count("c1") == 0
    assert registry.subscribers("a@y") == ("c2",)


def test_a_lone_subscriber_moves_between_shapes() -> None:
    """One subscriber, then two, then one again: order and snapshots stay right."""
    registry: Registry[str] = Registry()
    assert registry.subscribe("k", "c1") is True
    assert registry.subscribe("k", "c1") is False  # again: nothing changes
    assert registry.subscribers("k") == ("c1",)
    registry.subscribe("k", "c2")
    registry.subscribe("k", "c3")
    assert registry.subscribers("k") == ("c1", "c2", "c3")  # in subscription order
    assert registry.unsubscribe("k", "c1") is False
    assert registry.unsubscribe("k", "c3") is False
    assert registry.subscribers("k") == ("c2",)
    assert registry.unsubscribe("k", "c1") is False
    assert registry.unsubscribe("k", "c2") is True
    assert registry.channels() == [] and not registry.has_subscribers("k")


def test_snapshots_are_immutable_under_change() -> None:
    """A fan-out's tuple is unaffected by later subscribes (it may yield mid-way)."""
    registry: Registry[str] = Registry()
    registry.subscribe("k", "c1")
    snapshot = registry.subscribers("k")
    registry.subscribe("k", "c2")
    assert snapshot == ("c1",)
    assert set(registry.subscribers("k")) == {"c1", "c2"}


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc"), st.sampled_from("xyz")), max_size=60))
@settings(max_examples=200, deadline=None)
def test_registry_matches_a_model(operations) -> None:
    """Property: after any sequence of (un)subscribes the registry equals a plain set model."""
    registry: Registry[str] = Registry()
    model: set[tuple[str, str]] = set()
    for add, key, conn in operations:
        if add:
            was_first = registry.subscribe(key, conn)
            assert was_first == (not any(k == key for k, _ in model))
            model.add((key, conn))
        else:
            was_last = registry.unsubscribe(key, conn)
            had = (key, conn) in model
            model.discard((key, conn))
            assert was_last == (had and not any(k == key for k, _ in model))
    for key in "abc":
        assert set(registry.subscribers(key)) == {c for k, c in model if k == key}
        assert len(registry.subscribers(key)) == sum(1 for k, _ in model if k == key)
        assert registry.has_subscribers(key) == any(k == key for k, _ in model)
    assert sorted(registry.channels()) == sorted({k for k, _ in model})
    for conn in "xyz":
        assert registry.subscription_count(conn) == sum(1 for _, c in model if c == conn)


def test_is_allowed_is_exact() -> None:
    """The webhook's channel list is matched exactly (no prefix or case games)."""
    assert is_allowed(frozenset({"news"}), "news")
    assert not is_allowed(frozenset({"news"}), "News")
    assert not is_allowed(frozenset({"news"}), "news2")
