"""The worker's hub, in-process: encode once per protocol, one broker key per channel, delivery.

A real hub with a fake broker subscriber (`tests.inprocess`) and kernel
socket pairs; no Redis, no gunicorn.
"""

from __future__ import annotations

import re

import gevent

from gusher.config import Settings
from gusher.core.history import HistoryPolicy
from gusher.core.publication import Publication
from gusher.edge import keepalive
from gusher.keys import user_channel
from gusher.wire import frames
from gusher.wire.base import Disconnect
from gusher.wire.gusher import GusherProtocol
from tests.inprocess import FakeSubscriber, Worker, numbered


def subscribe(channel: str) -> dict:
    return {"event": "gusher.subscribe", "data": {"id": "1", "channel": channel}}


class CountingProtocol(GusherProtocol):
    """A second protocol: gusher's, but it marks its frames and counts its encodings."""

    name = "counting"

    def __init__(self) -> None:
        self.encoded = 0

    def publication(self, publication: Publication) -> bytes:
        self.encoded += 1
        return frames.encode_text(b"counted:" + publication.payload)


def test_each_publication_is_encoded_once_per_protocol_with_subscribers(worker: Worker) -> None:
    """Two protocols on one channel: one encoding each, whatever their subscriber counts."""
    counting = CountingProtocol()
    gusher_peers = [worker.connect(user=f"g{i}")[1] for i in range(3)]
    counting_peers = [worker.connect(user=f"c{i}", protocol=counting)[1] for i in range(4)]
    for peer in gusher_peers + counting_peers:
        peer.send(subscribe("news"))
    for peer in gusher_peers + counting_peers:
        assert peer.messages()[0]["event"] == "gusher.subscribe_succeeded"
    message = {"channel": "news", "event": "e", "data": 1}
    worker.subscriber.publish("app@news", message, message)
    assert counting.encoded == 2  # two publications, one encoding each
    for peer in gusher_peers:
        assert peer.messages() == [message, message]
    for peer in counting_peers:
        assert [payload[:8] for _, payload in peer.frames()] == [b"counted:", b"counted:"]
    assert worker.metrics.deliveries == 2 * 7
    worker.subscriber.publish("app@other", message)  # nobody subscribed: nothing encoded
    assert counting.encoded == 2


def test_a_burst_reaches_each_subscriber_in_one_write_in_order(worker: Worker) -> None:
    """A batch of one channel is joined into one buffer: one send per subscriber, in publish order."""
    session, peer = worker.connect()
    peer.send(subscribe("news"))
    peer.messages()
    sends = []
    real = session.conn._sock
    session.conn._sock = _Recording(real, sends)  # type: ignore[assignment]
    burst = [{"channel": "news", "event": "e", "data": n} for n in range(20)]
    worker.subscriber.publish("app@news", *burst)
    session.conn._sock = real
    assert len(sends) == 1
    assert peer.messages() == burst


class _Recording:
    """A socket stand-in that records each send and passes it on."""

    def __init__(self, sock, sends: list) -> None:
        self._sock, self._sends = sock, sends

    def send(self, data: bytes) -> int:
        self._sends.append(data)
        return self._sock.send(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def test_a_key_is_released_after_its_last_local_subscriber_only(worker: Worker) -> None:
    """The hub wants a channel's key while any local client has it, and releases it after the last."""
    first, peer1 = worker.connect(user="a")
    _, peer2 = worker.connect(user="b")
    peer1.send(subscribe("news"))
    peer2.send(subscribe("news"))
    peer1.messages(), peer2.messages()
    assert "app@news" in worker.subscriber.active
    peer2.send({"event": "gusher.unsubscribe", "data": {"id": "1", "channel": "news"}})
    assert peer2.messages()[0]["event"] == "gusher.unsubscribe_succeeded"
    assert "app@news" in worker.subscriber.wanted
    first.conn.release()  # the last subscriber disconnects
    assert "app@news" not in worker.subscriber.wanted
    assert worker.metrics.connections_total == 2


def test_a_message_after_subscribe_succeeded_always_arrives(worker: Worker) -> None:
    """Publications on the key right after the reply reach the new subscriber; earlier ones never do."""
    _, peer = worker.connect()
    worker.subscriber.want("app@news")
    worker.subscriber.confirm("app@news")  # another client keeps the key active already
    worker.subscriber.publish("app@news", {"channel": "news", "event": "before", "data": 0})
    peer.send(subscribe("news"))
    assert peer.messages()[0]["event"] == "gusher.subscribe_succeeded"
    worker.subscriber.publish("app@news", {"channel": "news", "event": "after", "data": 1})
    assert [m["event"] for m in peer.messages()] == ["after"]


def test_user_pushes_reach_every_connection_of_the_user(worker: Worker) -> None:
    """A connection follows its user's channel from the start, without subscribing to it."""
    _, mine1 = worker.connect(user="u1")
    _, mine2 = worker.connect(user="u1")
    _, theirs = worker.connect(user="u2")
    gevent.sleep(0.01)
    assert worker.subscriber.want_calls.count(user_channel("app", "u1")) == 1
    message = {"channel": "gusher.user", "event": "note", "data": "hi"}
    worker.subscriber.publish(user_channel("app", "u1"), message)
    assert mine1.messages() == [message] and mine2.messages() == [message]
    assert theirs.messages() == []


def test_presence_reads_open_connections_and_subscribers(worker: Worker) -> None:
    """online_users leaves closing connections out; subscriber_users counts a key's local clients."""
    _, p1 = worker.connect(user="u1")
    s2, p2 = worker.connect(user="u2")
    for peer in (p1, p2):
        peer.send(subscribe("lobby"))
        peer.messages()
    s2.conn.close(1000, "bye")  # closing: its user is gone already
    assert worker.hub.online_users() == [("app", "u1")]
    assert worker.hub.subscriber_users("app@lobby") == (1, ["u1"])
    assert "app@lobby" in worker.hub.subscribed_keys()


def test_a_slow_consumer_is_cut_off_and_counted_without_slowing_others() -> None:
    """A client that reads nothing is closed past max_pending_bytes; one that reads gets everything."""
    worker = Worker(Settings(max_pending_bytes=200_000))
    try:
        slow, slow_peer = worker.connect(user="slow")
        _, fast_peer = worker.connect(user="fast")
        for peer in (slow_peer, fast_peer):
            peer.send(subscribe("news"))
            peer.messages()
        big = {"channel": "news", "event": "e", "data": "x" * 50_000}
        received = 0
        for _ in range(40):  # 2 MB, far more than the kernel buffers plus 200 KB
            worker.subscriber.publish("app@news", big)
            received += len(fast_peer.messages(wait=0.001))
        received += len(fast_peer.messages())
        assert not slow.is_open and worker.metrics.slow_consumer_drops == 1
        assert received == 40
        # Issue 17 #8: what the cut client reads is whole frames, then the close frame with 1008.
        got: list = []
        for _ in range(100):
            got += slow_peer.frames()  # server_frames fails on a torn frame
            if got and got[-1][0] == frames.OP_CLOSE:
                break
        assert all(opcode == frames.OP_TEXT for opcode, _ in got[:-1]) and len(got) < 40
        assert got[-1][1][:2] == (1008).to_bytes(2, "big") and b"too slow" in got[-1][1]
    finally:
        worker.close()


def test_shutdown_closes_every_client_with_1001(worker: Worker) -> None:
    """close_all uses the protocol's code for a shutdown: clients reconnect elsewhere."""
    _, peer = worker.connect()
    worker.hub.close_all(Disconnect.SHUTDOWN)
    ((opcode, payload),) = peer.frames()
    assert opcode == frames.OP_CLOSE and payload[:2] == (1001).to_bytes(2, "big")


def test_keepalive_pings_quiet_clients_and_drops_dead_ones(worker: Worker) -> None:
    """A quiet client gets a ping; still quiet after the timeout, it is dropped and counted."""
    session, peer = worker.connect()
    settings, now = worker.settings, session.conn.last_heard
    keepalive.sweep([session], now + settings.ping_interval + 1, settings, worker.metrics)
    assert peer.frames() == [(frames.OP_PING, b"")]
    keepalive.sweep(
        [session], now + settings.ping_interval + settings.ping_timeout + 2, settings, worker.metrics
    )
    assert not session.is_open and worker.metrics.ping_timeouts == 1
    assert session.conn not in worker.hub.sessions


def test_keepalive_finishes_a_close_the_client_never_answers(worker: Worker) -> None:
    """After our Close, a client silent for close_timeout is released."""
    session, _ = worker.connect()
    session.conn.close(1000, "bye")
    keepalive.sweep(
        [session],
        session.conn.closing_since + worker.settings.close_timeout + 1,
        worker.settings,
        worker.metrics,
    )
    assert session.conn not in worker.hub.sessions


class GreetingProtocol(GusherProtocol):
    """gusher's protocol with a greeting, as Pusher's `connection_established`."""

    name = "greeting"

    def greeting(self, socket_id: str = "") -> bytes:
        return frames.encode_text(b'{"event":"hello","socket_id":"' + socket_id.encode() + b'"}')


def test_a_protocols_greeting_is_the_first_frame(worker: Worker) -> None:
    """A connection of a protocol that greets gets the greeting before anything else."""
    _, peer = worker.connect(protocol=GreetingProtocol())
    peer.send({"event": "gusher.ping", "data": {"id": 1}})
    assert [m["event"] for m in peer.messages()] == ["hello", "gusher.pong"]


def test_socket_ids_name_each_connection_as_pusher_does(worker: Worker) -> None:
    """`{worker}.{number}`, digits and a dot as Pusher's socket ids, one per connection."""
    sessions = [worker.connect(user=f"u{i}")[0] for i in range(3)]
    ids = [session.socket_id for session in sessions]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"\d+\.\d+", i) for i in ids)
    assert {i.split(".")[0] for i in ids} == {str(worker.hub.worker_number)}


def test_a_push_to_one_socket_reaches_it_alone_and_never_another_apps(worker: Worker) -> None:
    """The worker's channel carries socket pushes; the routing field is never shown; apps never cross."""
    target, target_peer = worker.connect(user="u1")
    _, same_user = worker.connect(user="u1")
    other_app, other_peer = worker.connect(user="u1", app_key="other")
    key = worker.hub.worker_key
    assert key in worker.subscriber.wanted  # one subscription per worker, none per socket
    for_target = Publication.create("gusher.socket", "note", {"n": 1}, socket=f"app@{target.socket_number}")
    wrong_app = Publication.create("gusher.socket", "note", 2, socket=f"app@{other_app.socket_number}")
    gone = Publication.create("gusher.socket", "note", 3, socket="app@999999")
    worker.hub.on_publications([(key, for_target), (key, wrong_app), (key, gone)])
    assert target_peer.messages() == [{"channel": "gusher.socket", "event": "note", "data": {"n": 1}}]
    assert same_user.messages() == [] and other_peer.messages() == []


def test_multi_subscribe_is_all_or_nothing() -> None:
    """One channel not allowed, or the limit reached half-way: nothing stays subscribed."""
    worker = Worker(Settings(max_subscriptions_per_connection=3))
    try:
        session, peer = worker.connect(channels=("a", "b", "c", "d"))
        multi = {"event": "gusher.multi_subscribe", "data": {"id": 1, "multi_channel": ["a", "x"]}}
        peer.send(multi)
        (reply,) = peer.messages()
        assert (
            reply["event"] == "gusher.multi_subscribe_error"
            and "x: channel not allowed" in reply["data"]["reason"]
        )
        peer.send(
            {"event": "gusher.multi_subscribe", "data": {"id": 2, "multi_channel": ["a", "b", "c", "d"]}}
        )
        (reply,) = peer.messages()
        assert reply["event"] == "gusher.multi_subscribe_error" and "limit" in reply["data"]["reason"]
        assert worker.hub.registries[session.protocol].subscription_count(session.conn) == 0
        peer.send({"event": "gusher.multi_subscribe", "data": {"id": 3, "multi_channel": ["a", "b"]}})
        (reply,) = peer.messages()
        assert reply["event"] == "gusher.multi_subscribe_succeeded" and reply["data"]["multi_channel"] == [
            "a",
            "b",
        ]
        worker.subscriber.publish("app@b", {"channel": "b", "event": "e", "data": 1})
        assert peer.messages() == [{"channel": "b", "event": "e", "data": 1}]
    finally:
        worker.close()


def _channels_change(channels: list[str], mode: str) -> Publication:
    return Publication.create(
        "gusher.user", "gusher.channels_changed", {"channels": channels, "mode": mode}, control="channels"
    )


def test_adding_channels_at_runtime_lets_the_users_connections_subscribe_and_tells_them(
    worker: Worker,
) -> None:
    """Every connection of the user, and only theirs, gets the channel; each is told its new list."""
    _, mine1 = worker.connect(user="u1", channels=("news",))
    _, mine2 = worker.connect(user="u1", channels=("news", "chat.*"))
    _, theirs = worker.connect(user="u2", channels=("news",))
    mine1.send(subscribe("scores"))
    assert mine1.messages()[0]["data"]["reason"] == "channel not allowed"
    worker.hub.on_publications([(user_channel("app", "u1"), _channels_change(["scores"], "add"))])
    told = {"channel": "gusher.user", "event": "gusher.channels_changed"}
    assert mine1.messages() == [{**told, "data": {"channels": ["news", "scores"], "unsubscribed": []}}]
    assert mine2.messages() == [
        {**told, "data": {"channels": ["news", "chat.*", "scores"], "unsubscribed": []}}
    ]
    assert theirs.messages() == []
    mine1.send(subscribe("scores"))
    assert mine1.messages()[0]["event"] == "gusher.subscribe_succeeded"
    theirs.send(subscribe("scores"))
    assert theirs.messages()[0]["data"]["reason"] == "channel not allowed"


def test_replacing_channels_ends_the_subscriptions_no_longer_allowed(worker: Worker) -> None:
    """What the new list does not allow is unsubscribed (and no longer delivered); the rest stays."""
    session, peer = worker.connect(user="u1", channels=("news", "chat.*"))
    for channel in ("news", "chat.a", "chat.b"):
        peer.send(subscribe(channel))
    assert [m["event"] for m in peer.messages()] == ["gusher.subscribe_succeeded"] * 3
    worker.hub.on_publications(
        [(user_channel("app", "u1"), _channels_change(["chat.a", "extra"], "replace"))]
    )
    (told,) = peer.messages()
    assert told["data"] == {"channels": ["chat.a", "extra"], "unsubscribed": ["news", "chat.b"]}
    assert "app@news" not in worker.subscriber.wanted  # its last local subscriber left
    worker.subscriber.publish("app@news", {"channel": "news", "event": "e", "data": 1})
    worker.subscriber.publish("app@chat.a", {"channel": "chat.a", "event": "e", "data": 2})
    assert peer.messages() == [{"channel": "chat.a", "event": "e", "data": 2}]
    peer.send(subscribe("news"))
    assert peer.messages()[0]["data"]["reason"] == "channel not allowed"
    assert session.identity.allows("extra") and not session.identity.allows("chat.b")


def test_a_change_keeps_its_place_among_the_users_messages(worker: Worker) -> None:
    """In one batch, messages before and after the change arrive around it, in order."""
    _, peer = worker.connect(user="u1", channels=("news",))
    key = user_channel("app", "u1")
    before = Publication.create("gusher.user", "note", 1)
    after = Publication.create("gusher.user", "note", 2)
    worker.hub.on_publications([(key, before), (key, _channels_change(["x"], "add")), (key, after)])
    assert [m["event"] for m in peer.messages()] == ["note", "gusher.channels_changed", "note"]


def test_a_malformed_change_from_a_raw_publish_is_ignored(worker: Worker) -> None:
    """Only the master's form is applied; anything else changes nothing and sends nothing."""
    session, peer = worker.connect(user="u1", channels=("news",))
    key = user_channel("app", "u1")
    for data in ({"channels": "x", "mode": "add"}, {"channels": [1], "mode": "add"}, "nope"):
        bad = Publication.create("gusher.user", "gusher.channels_changed", data, control="channels")
        worker.hub.on_publications([(key, bad)])
    assert peer.messages() == [] and session.identity.channels == ("news",)


def test_a_subscribe_waiting_for_redis_is_refused_if_a_change_revoked_it_meanwhile() -> None:
    """The allowed list is read again once the broker confirms the key."""
    worker = Worker(subscriber=FakeSubscriber(auto_confirm=False))
    try:
        _, peer = worker.connect(user="u1", channels=("news", "x"))
        peer.send(subscribe("news"))
        gevent.sleep(0.02)
        worker.hub.on_publications([(user_channel("app", "u1"), _channels_change(["x"], "replace"))])
        worker.subscriber.confirm("app@news")
        events = peer.messages()
        assert [m["event"] for m in events] == ["gusher.channels_changed", "gusher.subscribe_error"]
        assert events[1]["data"]["reason"] == "channel not allowed"
    finally:
        worker.close()


# -- history channels (issue 12) ---------------------------------------------------

POLICY = HistoryPolicy(100, 60)


def resume(channel: str, offset: int, epoch: str = "E") -> dict:
    return {
        "event": "gusher.subscribe",
        "data": {"id": "1", "channel": channel, "since": {"offset": offset, "epoch": epoch}},
    }


def test_a_resume_replays_what_was_missed_and_merges_what_came_during_the_read(worker: Worker) -> None:
    """Pushes racing the history read (4 and 5 arrive while it runs; 3 both kept and live): each once."""
    key = "app@c"
    worker.history.add(key, "c", 1, 2, 3)
    live = [numbered("c", n) for n in (3, 4, 5)]
    worker.subscriber.want(key)
    worker.subscriber.confirm(key)
    worker.history.during_read = lambda: worker.hub.on_publications([(key, p) for p in live])
    _, peer = worker.connect(history=POLICY)
    peer.send(resume("c", 1))
    reply, *messages = peer.messages()
    assert reply["data"] == {"id": "1", "channel": "c", "offset": 3, "epoch": "E", "recovered": True}
    assert [m["offset"] for m in messages] == [2, 3, 4, 5]
    assert worker.metrics.recoveries == 1


def test_a_late_copy_of_a_replayed_message_is_skipped(worker: Worker) -> None:
    """The read can answer before pub/sub hands over what it counted: that copy never doubles."""
    key = "app@c"
    worker.history.add(key, "c", 1, 2, 3)
    worker.subscriber.want(key)
    worker.subscriber.confirm(key)
    _, peer = worker.connect(history=POLICY)
    _, other = worker.connect(history=POLICY)
    other.send({"event": "gusher.subscribe", "data": {"id": "1", "channel": "c"}})
    assert other.messages()[0]["data"]["offset"] == 3
    peer.send(resume("c", 0))
    reply, *replayed = peer.messages()
    assert reply["data"]["offset"] == 3 and [m["offset"] for m in replayed] == [1, 2, 3]
    worker.hub.on_publications([("app@c", numbered("c", 3)), ("app@c", numbered("c", 4))])
    assert [m["offset"] for m in peer.messages()] == [4]
    assert [m["offset"] for m in other.messages()] == [4], "a plain subscribe: what follows its offset"
    worker.hub.on_publications([("app@c", numbered("c", 5))])
    assert [m["offset"] for m in peer.messages()] == [5]


def test_a_resume_that_cannot_be_whole_replays_nothing(worker: Worker) -> None:
    key = "app@c"
    worker.history.add(key, "c", 5, 6, 7)  # 1..4 no longer kept
    _, peer = worker.connect(history=POLICY)
    peer.send(resume("c", 2))
    (reply,) = peer.messages()
    assert reply["data"]["recovered"] is False and reply["data"]["offset"] == 7
    peer.send(resume("d", 0, epoch="old"))
    (reply,) = peer.messages()
    assert reply["data"]["recovered"] is False and reply["data"]["epoch"] == "E"
    assert worker.metrics.recoveries_failed == 2
    worker.hub.on_publications([(key, numbered("c", 8))])
    assert [m["offset"] for m in peer.messages()] == [8]


def test_a_history_subscribe_refused_midway_releases_its_key() -> None:
    """The broker never confirms: the subscribe is refused and nothing stays wanted."""
    worker = Worker(Settings(subscribe_timeout=0.1), subscriber=FakeSubscriber(auto_confirm=False))
    try:
        _, peer = worker.connect(history=POLICY)
        peer.send(resume("c", 0))
        (reply,) = peer.messages(0.3)
        assert reply["event"] == "gusher.subscribe_error" and "redis unavailable" in reply["data"]["reason"]
        assert "app@c" not in worker.subscriber.wanted
    finally:
        worker.close()


def _subscribed_to_history(worker: Worker, top: int) -> object:
    """A history client subscribed to `c`, whose history holds 1..top."""
    if top:
        worker.history.add("app@c", "c", *range(1, top + 1))
    _, peer = worker.connect(history=POLICY)
    peer.send({"event": "gusher.subscribe", "data": {"id": "1", "channel": "c"}})
    assert peer.messages()[0]["data"]["offset"] == top
    return peer


def test_a_gap_in_the_live_stream_is_filled_from_history(worker: Worker) -> None:
    """4 and 5 never came over pub/sub: read back, and 6 after them, in order, once each."""
    peer = _subscribed_to_history(worker, 2)
    worker.hub.on_publications([("app@c", numbered("c", 3))])
    assert [m["offset"] for m in peer.messages()] == [3]
    worker.history.add("app@c", "c", 3, 4, 5, 6)
    worker.hub.on_publications([("app@c", numbered("c", 6))])
    assert [m["offset"] for m in peer.messages()] == [4, 5, 6]
    assert worker.metrics.history_catchups == 1


def test_after_a_reconnect_what_was_published_meanwhile_is_read_back(worker: Worker) -> None:
    """on_ready again (the subscriber reconnected): 4 and 5 from history, 6 (live, during the read)
    after them; nothing twice."""
    peer = _subscribed_to_history(worker, 3)
    worker.history.add("app@c", "c", 4, 5)
    worker.history.during_read = lambda: worker.hub.on_publications(
        [("app@c", numbered("c", 5)), ("app@c", numbered("c", 6))]
    )
    worker.hub.on_ready("app@c")
    assert [m["offset"] for m in peer.messages()] == [4, 5, 6]
    worker.hub.on_publications([("app@c", numbered("c", 7))])
    assert [m["offset"] for m in peer.messages()] == [7]


def test_a_numbering_that_starts_again_is_delivered_as_it_comes(worker: Worker) -> None:
    """Offset 1 after 5 is a new epoch, not a gap: no catch-up, nothing held back."""
    peer = _subscribed_to_history(worker, 5)
    worker.hub.on_publications([("app@c", numbered("c", 6)), ("app@c", numbered("c", 1))])
    worker.hub.on_publications([("app@c", numbered("c", 2))])
    assert [m["offset"] for m in peer.messages()] == [6, 1, 2]
    assert worker.metrics.history_catchups == 0


def test_after_a_reconnect_a_new_numbering_is_delivered_from_its_start(worker: Worker) -> None:
    """Redis came back empty (a new epoch): what was published since, 1 and 2, is all new here."""
    peer = _subscribed_to_history(worker, 3)
    worker.history.epoch = "F"
    worker.history.kept["app@c"] = [numbered("c", 1), numbered("c", 2)]
    worker.hub.on_ready("app@c")
    assert [m["offset"] for m in peer.messages()] == [1, 2]
    worker.hub.on_publications([("app@c", numbered("c", 3))])
    assert [m["offset"] for m in peer.messages()] == [3]


def test_after_a_catch_up_late_copies_of_what_it_read_are_skipped(worker: Worker) -> None:
    """The catch-up's read counted 4 and 5 whose pub/sub copies arrive after it: never twice."""
    peer = _subscribed_to_history(worker, 3)
    worker.history.add("app@c", "c", 4, 5)
    worker.hub.on_ready("app@c")
    assert [m["offset"] for m in peer.messages()] == [4, 5]
    worker.hub.on_publications([("app@c", numbered("c", 4)), ("app@c", numbered("c", 5))])
    worker.hub.on_publications([("app@c", numbered("c", 6))])
    assert [m["offset"] for m in peer.messages()] == [6]
