"""The message broker and everything gusher keeps in Redis; the only importer of redis-py.

`base` states what the rest of gusher may rely on (the `Broker` and
`Subscriber` interfaces and their guarantees); `factory.create_broker` picks
the implementation for `REDIS_ADDR`. Errors of redis-py become
`BackendUnavailable` here, where they enter.
"""
