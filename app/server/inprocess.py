"""The scripted engine served inside the desktop app's own process: a thread with its own event loop.

Why: a `slipstream serve` child is a second interpreter (~42 MB resident, most of it Python, aiohttp
and shared libraries the app has loaded already); served on a thread of the app it costs ~15 MB. The
wire is the same: the app's session connects to ws://127.0.0.1:PORT/v1/responses with a fresh token,
exactly as to a child, and `run_server` gets the settings `slipstream serve` would use
(`app.server.cli.server_options` of its default arguments).

The thread is the server's alone: its own `asyncio` loop (a plain selector loop, never the GUI's Qt
loop), so the server's work never runs inside a GUI frame. It serves WebSocket mode with `websockets`
(`app.server.ws_server`: the same connection pump and checks as `slipstream serve`'s aiohttp route),
which the app's client has loaded already: aiohttp's ~0.2 s of imports, which held the GIL while the
window and the first index wanted it, are never paid in the app. The engine is imported on that
thread when the scripted engine is first needed.

Lifetime, as for a child: the owner (`AppServices`, through `app.adapters.local_server`) awaits
`aclose()`, which stops the loop within a bound and waits for the thread to end; the thread is a
daemon as the last resort, so a server that ignores its stop can never hold the process at exit
(the process's end is its end, as PR_SET_PDEATHSIG is a child's). The headless commands keep their
own child (`slipstream ask`/`watch`), and so do the Chat Completions bridge and explicit endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

__all__ = ["InProcessServer", "live_servers", "start_scripted"]

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0  # aclose(): the thread gets this long to close its connections and end
_POLL_S = 0.01

_LIVE: set[InProcessServer] = set()  # started and not ended yet


class InProcessServer:
    """A scripted server on a thread of this process; the same handle as a child's (url, token, aclose)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = ""  # ws://127.0.0.1:PORT/v1/responses once listening
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # the server thread's loop, while it serves
        self._stop: asyncio.Event | None = None
        self._closing = False
        self._owner_loop: asyncio.AbstractEventLoop | None = None  # where start_scripted() waits
        self._started: asyncio.Future[None] | None = None
        self.thread = threading.Thread(target=self._main, name="slipstream-serve", daemon=True)

    def __repr__(self) -> str:
        return f"InProcessServer(url={self.url!r}, alive={self.thread.is_alive()})"

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    # ---- the owner's side (any thread) -----------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the server to stop (idempotent, never blocks); a server still starting stops once up."""
        with self._lock:
            self._closing = True
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # its loop closed meanwhile: the thread is ending anyway
                pass

    async def aclose(self, grace: float = STOP_GRACE_S) -> None:
        """Stop serving and wait up to `grace` s for the thread to end; never hangs."""
        self.request_stop()
        end = time.monotonic() + grace
        while self.thread.is_alive() and time.monotonic() < end:
            await asyncio.sleep(_POLL_S)
        if self.thread.is_alive():
            log.error(
                "the in-process scripted server did not stop in %.1f s: left to the process exit", grace
            )
        else:
            _LIVE.discard(self)

    # ---- the server thread -------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported to whoever awaits the start; logged otherwise
            self._report(exc)
            if self.url:
                log.exception("the in-process scripted server failed")
        finally:
            with self._lock:
                self._loop = self._stop = None

    async def _serve(self) -> None:
        from app.server.cli import build_engine, build_parser, server_options
        from app.server.ws_server import run_ws_server

        args = build_parser().parse_args(["--engine", "scripted", "--host", "127.0.0.1", "--port", "0"])
        stop = asyncio.Event()
        async with run_ws_server(
            build_engine(args), host=args.host, port=args.port, token=self.token, **server_options(args)
        ) as srv:
            with self._lock:
                closing = self._closing  # the owner gave up while we were starting
                if not closing:
                    self._loop, self._stop = asyncio.get_running_loop(), stop
                    self.url = srv.url
            if closing:
                self._report(RuntimeError("stopped while starting"))
                return
            self._report(None)
            await stop.wait()

    # ---- the start handshake -----------------------------------------------------------------------

    def _report(self, exc: BaseException | None) -> None:
        """Tell the starting coroutine (on the owner's loop) that we listen, or why we could not."""
        fut, loop = self._started, self._owner_loop
        if fut is None or loop is None:
            return

        def settle() -> None:
            if fut.done():
                return
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the owner's loop is closed: nobody is waiting any more
            pass


async def start_scripted(token: str) -> InProcessServer:
    """Serve the scripted engine on a new thread of this process; returns once it listens.

    Raises what stopped it from listening (e.g. OSError). Cancelled while starting, the thread is
    told to stop and ends by itself as soon as it is up; it never outlives a failed start.
    """
    server = InProcessServer(token)
    server._owner_loop = asyncio.get_running_loop()
    server._started = server._owner_loop.create_future()
    _LIVE.add(server)
    server.thread.start()
    try:
        await server._started
    except BaseException:
        server.request_stop()
        if not server.alive:
            _LIVE.discard(server)
        raise
    return server


def live_servers() -> list[InProcessServer]:
    """The in-process servers started and not ended yet (a quit must leave none)."""
    return [s for s in _LIVE if s.alive]
