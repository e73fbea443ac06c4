"""Choose the broker engine for the configured `REDIS_ADDR`."""

from __future__ import annotations

from gusher.broker.base import Broker
from gusher.broker.client import CLUSTER_SCHEME, SENTINEL_SCHEME
from gusher.broker.cluster import ClusterBroker
from gusher.broker.sentinel import SentinelBroker
from gusher.broker.standalone import RedisBroker
from gusher.config import Settings


def create_broker(settings: Settings, client_name: str = "gusher") -> Broker:
    """The broker for `settings.redis_url`; connects lazily, so Redis may come up later.

    `redis+cluster://` picks the Redis Cluster engine, `redis+sentinel://`
    the primary Sentinel names; every other URL names one server.
    """
    if settings.redis_url.startswith(CLUSTER_SCHEME + "://"):
        return ClusterBroker(settings, client_name)
    if settings.redis_url.startswith(SENTINEL_SCHEME + "://"):
        return SentinelBroker(settings, client_name)
    return RedisBroker(settings, client_name)
