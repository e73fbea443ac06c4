"""Pure logic shared by both roles: no flask, redis, gevent or socket import here.

Publications and their Redis payload, the channel registry, identities and
channel patterns, app records, request signatures, JWTs and the worker's
metrics. Everything here is tested without a server.
"""
