"""Sans-I/O core of the Responses API WebSocket mode: events, codec, client and server sessions.

No sockets, no clock, no asyncio, no Qt: plain data in, plain data out (time is passed in).

Modules:
    events   typed frozen events (msgspec Structs); unknown server types kept as UnknownEvent
    codec    decode_server / decode_client / encode / encode_sse / SSEDecoder
    errors   ProtocolError → LocalProtocolError (we erred) | RemoteProtocolError (the peer erred)
    server   ServerSession (one per connection or HTTP request), ResponseStore (server-wide LRU)
    client   ClientSession: chain heads, transcripts, incremental-vs-full, recovery outcomes
    turns    Turn and EngineOutput: what ServerSession hands engines and takes back
    backoff  backoff() delay generator and classify_close()
    ids      id factories (random in production, sequential in tests)
"""
