"""The slave: WebSocket connections, their sessions, and the worker's fan-out.

`connection` is one socket (reads, writes, closing; no protocol); `session`
one client's protocol state and its commands, run in order in the worker's
`tasks.TaskPool`; `hub` the worker's connections, subscriptions and fan-out;
`handshake` and `routes` the HTTP side of a new connection; `services`
everything a worker runs and its start/stop.
"""
