"""Choose the broker engine for the configured `REDIS_ADDR`."""

from __future__ import annotations

from gusher.broker.base import Broker
from gusher.broker.client import CLUSTER_SCHEME
from gusher.broker.cluster import ClusterBroker
from gusher.broker.standalone import RedisBroker
from gusher.config import Settings


def create_broker(settings: Settings, client_name: str = "gusher") -> Broker:
    """The broker for `settings.redis_url`; connects lazily, so Redis may come up later.

    `redis+cluster://` picks the Redis Cluster engine; every other URL names
    one server (Sentinel will pick its engine here too).
    """
    if settings.redis_url.startswith(CLUSTER_SCHEME + "://"):
        return ClusterBroker(settings, client_name)
    return RedisBroker(settings, client_name)
