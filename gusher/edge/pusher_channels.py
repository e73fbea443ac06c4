"""Pusher's channels beyond the public ones: signatures, presence, cache, users, client events.

A Pusher session's plain public subscribe takes the hub's usual path. Every
command here runs as the session's task (it may wait on Redis):

- **private and encrypted channels**: the subscribe's `auth` must be the app's
  signature over `socket_id:channel` (`gusher.core.pusher`), else
  `pusher:subscription_error` and the connection stays;
- **presence channels**: the same over `socket_id:channel:channel_data`; the
  member joins in Redis (`gusher.broker.members`, exact across slaves) while
  the key's live messages are buffered (`BufferedSubscribes.subscribe_prepared`), so the
  member list of `subscription_succeeded` and the member events after it
  agree; the member leaves when it unsubscribes or its connection closes;
- **cache channels**: the kept last event follows `subscription_succeeded`,
  or `pusher:cache_miss`;
- **`#server-to-user-{id}`**: allowed to the connection signed in as that
  user; what is pushed to the user arrives on the user's channel, which the
  connection follows from its sign-in;
- **client events** (`client-*`): only when the app allows them, on a private
  or presence channel the sender is subscribed to, 10 a second; published
  with the sender excluded, and its `user_id` on a presence channel.

`run` is the worker's loop that keeps its presence members alive in Redis,
sweeps those of crashed workers, and retries leaves Redis refused.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import gevent

from gusher.broker.apps import AppCache
from gusher.broker.base import Broker
from gusher.core import exactjson
from gusher.core.apps import AppConfig
from gusher.core.identity import Identity
from gusher.core.publication import MEMBER_CONTROL, Publication
from gusher.core.pusher import (
    MAX_USER_ID_LENGTH,
    MAX_USER_INFO_BYTES,
    MEMBER_ADDED,
    USER_CHANNEL_PREFIX,
    allows_client_events,
    channel_text,
    is_cache,
    is_presence,
    member_events_after,
    needs_signature,
    signature_matches,
    user_text,
)
from gusher.edge.buffered_subscribes import Prepared
from gusher.edge.channel_events import ChannelEvents
from gusher.edge.hub import Hub
from gusher.edge.session import Session
from gusher.errors import BackendUnavailable, GusherError
from gusher.keys import pubsub_channel
from gusher.wire.base import ClientEvent, Signin, Subscribe
from gusher.wire.pusher import CLIENT_EVENT_REFUSED, UNAUTHORIZED, PusherProtocol, error_frame

log = logging.getLogger(__name__)

# Anyone may subscribe to a Pusher app's public channels: its identity allows every name.
ANONYMOUS = Identity("", ("*",))


class PusherChannels:
    """One worker's Pusher-specific commands, and its presence members' upkeep."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        apps: AppCache,
        max_members: int = 100,
        events: ChannelEvents | None = None,
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.apps = apps
        self.max_members = max_members
        self.events = events  # webhooks to apps' events_url
        self._alive = False  # the worker's liveness key was set (before its first member joins)
        self._leaves: list[tuple[str, str]] = []  # (key, socket id) Redis refused to remove

    # -- subscribes ---------------------------------------------------------------

    def subscribe(self, session: Session, command: Subscribe) -> None:
        """A private, presence, cache or user channel (plain public ones never come here)."""
        channel, conn = command.channel, session.conn
        protocol = session.protocol
        assert isinstance(protocol, PusherProtocol)
        if channel.startswith(USER_CHANNEL_PREFIX):
            user = session.identity.user_id
            if user and channel == USER_CHANNEL_PREFIX + user:
                conn.send(protocol.subscribed(command, session.socket_id))
            else:
                refusal = "not allowed: sign in as this user first"
                conn.send(protocol.subscribe_refused(command, refusal, session.socket_id))
            return
        try:
            app = self.apps.load(session.app_key)
        except GusherError as exc:
            refusal = f"redis unavailable, try again ({exc.reason})"
            conn.send(protocol.subscribe_refused(command, refusal, session.socket_id))
            return
        if needs_signature(channel):
            refusal = self._signature_refusal(session, command, app)
            if refusal:
                session.conn.send(protocol.subscribe_refused(command, refusal, session.socket_id))
                return
        if is_presence(channel):
            member = self._member(command.channel_data or "")
            if isinstance(member, str):
                conn.send(protocol.subscribe_refused(command, member, session.socket_id))
                return
            self.hub.buffered.subscribe_prepared(
                session, command, lambda key: self._join(session, key, *member)
            )
        elif is_cache(channel):
            self.hub.buffered.subscribe_prepared(
                session, command, lambda key: self._cached(session, command, key)
            )
        else:
            self._plain(session, command)

    def _plain(self, session: Session, command: Subscribe) -> None:
        refusal = self.hub.subscribe(session, command.channel)
        if refusal:
            session.conn.send(session.protocol.subscribe_refused(command, refusal, session.socket_id))
        else:
            session.conn.send(session.protocol.subscribed(command, session.socket_id))

    def _signature_refusal(self, session: Session, command: Subscribe, app: AppConfig) -> str:
        if not app.secret:
            return "not allowed: the app has no secret to sign private channels with"
        data = command.channel_data if is_presence(command.channel) else None
        if is_presence(command.channel) and data is None:
            return "channel_data missing: a presence subscribe carries the member's JSON"
        text = channel_text(session.socket_id, command.channel, data)
        if not signature_matches(command.auth, session.app_key, app.secret, text):
            return "invalid signature: not allowed"
        return ""

    @staticmethod
    def _member(channel_data: str) -> tuple[str, bytes] | str:
        """(user id, user info JSON) of a presence subscribe's `channel_data`, or why not."""
        try:
            data = exactjson.loads(channel_data.encode("utf-8", "replace"))
        except exactjson.JSONDecodeError:
            return "channel_data is not JSON"
        user_id = data.get("user_id") if isinstance(data, dict) else None
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            user_id = str(user_id)  # pusher-js keys its member hash by string (wave2 §1.6)
        if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
            return f"channel_data needs a 'user_id' of 1-{MAX_USER_ID_LENGTH} characters"
        info = exactjson.dumps(data.get("user_info"))
        if len(info) > MAX_USER_INFO_BYTES:
            return f"members' user_info is limited to {MAX_USER_INFO_BYTES} bytes"
        return user_id, info

    def _join(self, session: Session, key: str, user_id: str, info: bytes) -> Prepared:
        """`subscribe_prepared`'s step: the member joins in Redis; the presence reply, and the
        member events buffered meanwhile that its member list does not already tell."""
        protocol = session.protocol
        assert isinstance(protocol, PusherProtocol) and session.pusher is not None
        channel = key.partition("@")[2]
        added = Publication.create(
            channel,
            MEMBER_ADDED,
            {"user_id": user_id, "user_info": exactjson.loads(info)},
            control=MEMBER_CONTROL,
            exclude=session.socket_id,
        )
        try:
            self.ensure_alive()
            joined = self.broker.members.join(
                key, session.socket_id, self.hub.worker_number, user_id, info, self.max_members, added.payload
            )
        except BackendUnavailable:
            return "redis unavailable, try again", b"", None
        if joined is None:
            return f"the presence channel is full ({self.max_members} members)", b"", None
        members, first = joined
        if first and self.events is not None:
            self.events.member_added(key, user_id)
        session.pusher.presence[key] = (user_id, info)
        if not session.conn.is_open:  # closed while joining: `forget` ran before we knew
            self.unsubscribed(session, channel)
            return "connection closed", b"", None
        return "", protocol.presence_subscribed(channel, members), partial(member_events_after, members)

    def _cached(self, session: Session, command: Subscribe, key: str) -> Prepared:
        """`subscribe_prepared`'s step for a cache channel: its kept event, or a cache miss."""
        protocol = session.protocol
        assert isinstance(protocol, PusherProtocol)
        try:
            kept = self.broker.cached(key)
        except BackendUnavailable:
            kept = None
        reply = protocol.subscribed(command, session.socket_id)
        publication = Publication.parse(kept) if kept is not None else None
        if publication is None or not publication.is_common:
            if self.events is not None:
                self.events.cache_miss(key)
            return "", reply + protocol.cache_miss(command.channel), None
        return "", reply + protocol.publication(publication), None

    # -- leaving ------------------------------------------------------------------

    def unsubscribed(self, session: Session, channel: str) -> None:
        """`session` left `channel`: its presence membership ends (in a task: Redis may wait)."""
        state = session.pusher
        key = pubsub_channel(session.app_key, channel)
        if state is None or state.presence.pop(key, None) is None:
            return
        socket_id = session.socket_id
        self.hub.pool.schedule(lambda: self._leave(key, socket_id))

    def _leave(self, key: str, socket_id: str) -> None:
        try:
            removed = self.broker.members.leave(key, socket_id, self.hub.worker_number)
        except BackendUnavailable:
            self._leaves.append((key, socket_id))  # retried by `run`
            return
        if removed and self.events is not None:
            self.events.member_removed(key, removed)

    # -- client events and sign-in -----------------------------------------------

    def client_event(self, session: Session, command: ClientEvent) -> None:
        """Relay `command` to the channel's other subscribers, or a `pusher:error` 4301 saying why."""
        refusal = self._client_event_refusal(session, command)
        if refusal:
            session.conn.send(error_frame(refusal, CLIENT_EVENT_REFUSED))
            return
        key = pubsub_channel(session.app_key, command.channel)
        member = session.pusher.presence.get(key) if session.pusher is not None else None
        publication = Publication.create(
            command.channel,
            command.event,
            command.data,
            exclude=session.socket_id,
            user_id=member[0] if member else "",
        )
        try:
            self.broker.publish([(key, publication)])
        except BackendUnavailable:
            session.conn.send(error_frame("redis unavailable: the client event was not sent", 4200))
            return
        self.hub.metrics.client_events += 1
        if self.events is not None:
            self.events.client_event(key, command.event, command.data, session.socket_id, publication.user_id)

    def _client_event_refusal(self, session: Session, command: ClientEvent) -> str:
        try:
            app = self.apps.load(session.app_key)
        except GusherError as exc:
            return f"client event not sent: {exc.reason}"
        if not app.client_events:
            return "client events are not enabled for this app (its `client_events` field)"
        if not allows_client_events(command.channel):
            return "client events are allowed on private and presence channels only"
        key = pubsub_channel(session.app_key, command.channel)
        if not self.hub.registries[session.protocol].is_subscribed(key, session.conn):
            return f"not subscribed to {command.channel}"
        if session.pusher is not None and not session.pusher.take_client_event(time.monotonic()):
            return "client event rate limit (10 a second) reached"
        return ""

    def signin(self, session: Session, command: Signin) -> None:
        """Pusher's user sign-in: `signin_success` and the user's channel, or 4009."""
        protocol = session.protocol
        assert isinstance(protocol, PusherProtocol)
        try:
            app = self.apps.load(session.app_key)
        except GusherError as exc:
            session.conn.send(error_frame(f"sign-in failed: {exc.reason}", 4200))
            return
        user_id = self._user_id(command.user_data)
        text = user_text(session.socket_id, command.user_data)
        if not user_id or not signature_matches(command.auth, session.app_key, app.secret, text):
            session.conn.send(error_frame("invalid sign-in signature or user_data", UNAUTHORIZED))
            session.conn.close(UNAUTHORIZED, "invalid sign-in")
            return
        if session.identity.user_id and session.identity.user_id != user_id:
            session.conn.send(error_frame("already signed in as another user", UNAUTHORIZED))
            return
        session.identity = Identity(user_id, ANONYMOUS.channels)
        self.hub.follow_user(session)
        session.conn.send(protocol.signin_success(command.user_data))

    @staticmethod
    def _user_id(user_data: str) -> str:
        try:
            data = exactjson.loads(user_data.encode("utf-8", "replace"))
        except exactjson.JSONDecodeError:
            return ""
        user_id = data.get("id") if isinstance(data, dict) else None
        return user_id if isinstance(user_id, str) and 0 < len(user_id) <= MAX_USER_ID_LENGTH else ""

    # -- upkeep ---------------------------------------------------------------------

    def ensure_alive(self) -> None:
        """Set this worker's liveness before its first presence member or occupied channel."""
        if not self._alive:
            self.broker.members.keep_alive(self.hub.worker_number, self._liveness())
            self._alive = True

    def _liveness(self) -> float:
        """Two heartbeat intervals: `run` refreshes it every half interval and sweeps as often,
        so a crashed worker's members are gone within 2.5 intervals."""
        return 2 * self.hub.settings.heartbeat_interval

    def run(self) -> None:
        """The worker's upkeep loop: liveness, the sweep of crashed workers, retried leaves."""
        while True:
            gevent.sleep(self.hub.settings.heartbeat_interval / 2)
            try:
                self.upkeep()
            except BackendUnavailable as exc:
                log.warning("presence upkeep: %s", exc.reason)
            except Exception:
                log.exception("presence upkeep failed")

    def upkeep(self) -> None:
        """One round of `run`."""
        members = self.broker.members
        worker = self.hub.worker_number
        if self._alive and not members.keep_alive(worker, self._liveness()):
            self._join_again()
            if self.events is not None:
                self.events.restore()
        for key, user_id in members.sweep(worker):
            if self.events is not None:
                self.events.member_removed(key, user_id)
        if self.events is not None:
            self.events.sweep()
        leaves, self._leaves = self._leaves, []
        for key, socket_id in leaves:
            self._leave(key, socket_id)

    def _join_again(self) -> None:
        """This worker stalled past its liveness and its members were swept: join them again."""
        rejoined = 0
        for session in list(self.hub.sessions.values()):
            state = session.pusher
            if state is None or not session.is_open:
                continue
            for key, (user_id, info) in list(state.presence.items()):
                added = Publication.create(
                    key.partition("@")[2],
                    MEMBER_ADDED,
                    {"user_id": user_id, "user_info": exactjson.loads(info)},
                    control=MEMBER_CONTROL,
                    exclude=session.socket_id,
                )
                joined = self.broker.members.join(
                    key, session.socket_id, self.hub.worker_number, user_id, info, 10**9, added.payload
                )
                if joined is not None and joined[1] and self.events is not None:
                    self.events.member_added(key, user_id)
                rejoined += 1
        if rejoined:
            log.warning("this worker's presence had lapsed: %d memberships joined again", rejoined)

    def stop(self) -> None:
        """A clean stop: every member of this worker leaves at once (member_removed goes out)."""
        joined: list[tuple[str, str]] = []
        for session in list(self.hub.sessions.values()):
            if session.pusher is not None:
                joined.extend((key, session.socket_id) for key in session.pusher.presence)
                session.pusher.presence.clear()
        if joined or self._alive:
            try:
                removed = self.broker.members.stop(self.hub.worker_number, joined)
            except BackendUnavailable as exc:
                log.warning("presence members not removed at stop (swept later): %s", exc.reason)
                return
            for key, user_id in removed:
                if self.events is not None:
                    self.events.member_removed(key, user_id)
