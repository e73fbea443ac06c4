"""What a Pusher-protocol connection keeps besides a gusher one: its presence and client-event budget."""

from __future__ import annotations

from dataclasses import dataclass, field

# Pusher's rule: at most 10 client events per second per connection (wave2 §1.7).
CLIENT_EVENTS_PER_SECOND = 10.0


@dataclass(slots=True)
class PusherState:
    """Per connection: presence memberships (pub/sub key → (user id, user info JSON)) and a
    token bucket for client events. Only Pusher sessions have one, so gusher's cost nothing."""

    presence: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    tokens: float = CLIENT_EVENTS_PER_SECOND
    tokens_at: float = 0.0

    def take_client_event(self, now: float) -> bool:
        """Whether one more client event fits the rate (10 a second, a burst of 10)."""
        self.tokens = min(
            CLIENT_EVENTS_PER_SECOND, self.tokens + (now - self.tokens_at) * CLIENT_EVENTS_PER_SECOND
        )
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
