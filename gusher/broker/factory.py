"""Choose the broker engine for the configured `REDIS_ADDR`."""

from __future__ import annotations

from gusher.broker.base import Broker
from gusher.broker.standalone import RedisBroker
from gusher.config import Settings


def create_broker(settings: Settings, client_name: str = "gusher") -> Broker:
    """The broker for `settings.redis_url`; connects lazily, so Redis may come up later.

    Today one engine serves every URL (a single Redis server); Sentinel and
    Cluster URLs will pick theirs here.
    """
    return RedisBroker(settings, client_name)
