"""Sans-I/O core of the Responses API WebSocket mode: events, codec, client and server sessions.

No sockets, no clock, no asyncio, no Qt: plain data in, plain data out.
"""
