"""Client protocols, sans-I/O: bytes in → commands, a Publication → bytes out.

`frames` is RFC 6455 framing; `base` the `ClientProtocol` interface every
protocol implements and the protocol-neutral commands; `gusher` the seed's
protocol. Nothing here touches a socket, Redis or the event loop.
"""
