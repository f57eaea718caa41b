"""`AppServices`: the real implementation of the UI's façade (`app.services.api.Services`).

It composes everything below the UI for one project folder: the endpoint (a scripted
`slipstream serve` of its own when no model is configured), the one `ResponsesSession`, the
`Workspace` and its `ContextSync`, the tool-loop `Agent`, the history store and the keychain.
The UI subscribes to the signals and calls the methods; everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.adapters.local_server import LocalServer, LocalServerError, start_local_server
from app.adapters.project_fs import ProjectFS
from app.adapters.secrets import NoKeychainError, SecretsError, SecretStore
from app.adapters.store import HistoryStore, StoreError
from app.context.ledger import is_context_item
from app.protocol import events as ev
from app.services.agent import Agent, AgentConfig
from app.services.api import (
    ApprovalRequest,
    ConnectionStatus,
    FileChanges,
    SessionInfo,
    StreamStats,
    TestEvent,
    TranscriptSignals,
)
from app.services.session import Endpoint, ResponsesSession
from app.services.settings import KeychainInfo, Settings, save_settings
from app.services.signals import Signal
from app.services.workspace import ContextSync, Workspace
from app.tools.specs import CommandPolicy

log = logging.getLogger(__name__)

SCRIPTED_LABEL = "scripted — no model"
# Errors the session recovers from by itself (full resend, reconnect): not shown as failures.
RECOVERED_ERRORS = frozenset({"previous_response_not_found", "websocket_connection_limit_reached"})
BANNER = (
    "No model is configured, so Slipstream runs its scripted engine (offline, no model). "
    "To connect a model: Settings → Provider → OpenAI or xAI (key kept in your OS keychain); "
    "a local server (llama.cpp, Ollama, vLLM, SGLang, LM Studio) through `slipstream serve --engine chat "
    "--upstream URL`; or any Responses-compatible endpoint."
)
PRESETS: dict[str, tuple[str, float, str]] = {
    # provider -> (WebSocket URL, connection age limit in s, default model)
    "openai": ("wss://api.openai.com/v1/responses", 3600.0, "gpt-5.3-codex"),
    "xai": ("wss://api.x.ai/v1/responses", 1500.0, "grok-4.6"),
}


class _Rate:
    """Output tokens per second over the last second (≈4 characters a token)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._window: deque[tuple[float, int]] = deque()
        self._sum = 0
        self.peak = 0.0

    def add(self, chars: int) -> None:
        now = self._clock()
        self._window.append((now, chars))
        self._sum += chars
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._window and now - self._window[0][0] > 1.0:
            self._sum -= self._window.popleft()[1]

    def now(self) -> float:
        self._trim(self._clock())
        rate = self._sum / 4.0
        self.peak = max(self.peak, rate)
        return rate


class AppServices:
    """One project's services (see module docstring)."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        *,
        store: HistoryStore | None = None,
        secrets: SecretStore | None = None,
        endpoint: Endpoint | None = None,
        persist_settings: bool = True,
        watch: bool = True,
    ) -> None:
        self.project_root = Path(root).resolve()
        self.settings = settings
        self._store = store
        self._secrets = secrets
        self._fixed_endpoint = endpoint
        self._persist = persist_settings
        self._watch = watch
        self.transcript = TranscriptSignals()
        self.connection_changed: Signal[[ConnectionStatus]] = Signal("connection_changed")
        self.stats_changed: Signal[[StreamStats]] = Signal("stats_changed")
        self.files_changed: Signal[[FileChanges]] = Signal("files_changed")
        self.approval_requested: Signal[[ApprovalRequest]] = Signal("approval_requested")
        self.test_event: Signal[[TestEvent]] = Signal("test_event")
        self.busy_changed: Signal[[bool]] = Signal("busy_changed")
        self.banner_changed: Signal[[str]] = Signal("banner_changed")
        self._server: LocalServer | None = None
        self.endpoint: Endpoint | None = None
        self.session: ResponsesSession | None = None
        self.workspace: Workspace | None = None
        self.sync: ContextSync | None = None
        self.agent: Agent | None = None
        self._task: asyncio.Task[None] | None = None
        self._tests_task: asyncio.Task[None] | None = None
        self._rate = _Rate(time.monotonic)
        self._stats = StreamStats()
        self._stats_due = 0.0
        self._session_id: str | None = None
        self._persisted = 0  # transcript items already in the store
        self._engine_label = ""
        self._rerun_wanted = False
        self._failure_shown = False  # this request's failure already reached the transcript through an event
        self._rerun_handle: asyncio.TimerHandle | asyncio.Handle | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (starting a scripted server when no model is configured), index, warm up."""
        ws = Workspace(self.project_root, budget_tokens=self.settings.context_budget_tokens, pins=self.settings.pins,
                       user_ignores=self.settings.ignore_patterns)
        self.workspace = ws
        ws.files_changed.connect(self.files_changed.emit)  # changed rows only, built off the loop
        ws.changed.connect(self._on_disk_changed)
        ws.notice.connect(self.transcript.notice.emit)
        # The index runs on the workspace's worker while the endpoint (maybe a server child) comes up.
        indexing = asyncio.ensure_future(ws.start(watch=self._watch))
        try:
            self.endpoint = await self._resolve_endpoint()
        except BaseException:
            indexing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await indexing
            raise
        session = ResponsesSession(self.endpoint, rebuild=ws.rebuild)
        self.session = session
        session.state_changed.connect(self._on_state)
        self.sync = ContextSync(ws, session)
        policy = self.settings.approval_policy
        cmd_policy = CommandPolicy("ask")
        self.agent = Agent(
            self.sync, ProjectFS(self.project_root, ignore=ws.rules),
            config=AgentConfig(approval_policy=policy, command_policy=cmd_policy,
                               max_tool_turns=self.settings.max_tool_turns),
            approve=self._approve, on_event=self._on_event, on_tool_output=self.transcript.tool_output.emit,
            on_test_event=self._on_test_event, on_notice=self.transcript.notice.emit,
        )
        if self.settings.provider in PRESETS and not self.endpoint.store:
            self.agent.extra_settings = {"include": ["reasoning.encrypted_content"]}
            self.sync.settings = self.agent.settings()
        self._open_history()
        await indexing
        self.sync.push_soon()  # the warm-up: snapshot of the project on a fresh chain

    async def _resolve_endpoint(self) -> Endpoint:
        if self._fixed_endpoint is not None:
            self._engine_label = self._fixed_endpoint.label or self._fixed_endpoint.model
            return self._fixed_endpoint
        s = self.settings
        if s.provider == "local" and s.endpoint.startswith(("http://", "https://")):
            return await self._bridge_endpoint()
        if s.provider in PRESETS or s.provider == "openai_compatible" or (s.provider == "local" and s.endpoint):
            try:
                return self._configured_endpoint()
            except (ValueError, NoKeychainError, SecretsError) as exc:
                self.transcript.notice.emit("error", f"{exc} Falling back to the scripted engine.")
        return await self._scripted_endpoint()

    def _configured_endpoint(self) -> Endpoint:
        s = self.settings
        url, max_age, model = PRESETS.get(s.provider, ("", 3600.0, ""))
        url = _ws_url(s.endpoint) if s.endpoint else url
        if not url:
            raise ValueError(f"No endpoint is set for {s.provider}.")
        key = None
        if s.provider != "local":
            key = self._secret_store().get(s.provider)
            if not key:
                raise ValueError(f"No API key for {s.provider} in the keychain (Settings → API key).")
        model = s.model or model or "default"
        self._engine_label = f"{model} via {s.provider}"
        self.banner_changed.emit("")
        return Endpoint(url, key, model=model, max_age_s=max_age, label=self._engine_label)

    async def _bridge_endpoint(self) -> Endpoint:
        """A local Chat Completions server (llama.cpp, Ollama, vLLM, SGLang, LM Studio): our own
        `slipstream serve --engine chat` in front of it gives it the incremental WebSocket session."""
        s = self.settings
        args = ["--upstream", s.endpoint] + (["--upstream-model", s.model] if s.model else [])
        try:
            self._server = await start_local_server(engine="chat", extra_args=args)
        except LocalServerError as exc:
            self.transcript.notice.emit("error", f"Could not bridge to {s.endpoint}: {exc} "
                                                 "Falling back to the scripted engine.")
            return await self._scripted_endpoint()
        model = s.model or "default"
        self._engine_label = f"{model} via {s.endpoint} (bridge)"
        self.banner_changed.emit("")
        return Endpoint(self._server.url, self._server.token, model=model, label=self._engine_label)

    async def detect_local_servers(self) -> list[tuple[str, str, list[str]]]:
        """Chat Completions servers answering on their default loopback ports: (label, url, models)."""
        from app.services.providers import detect_local_servers

        found = await detect_local_servers()
        return [(d.label, d.url, list(d.models)) for d in found]

    async def _scripted_endpoint(self) -> Endpoint:
        try:
            self._server = await start_local_server()
        except LocalServerError as exc:
            self.connection_changed.emit(ConnectionStatus("error", str(exc), SCRIPTED_LABEL))
            raise
        self._engine_label = SCRIPTED_LABEL
        self.banner_changed.emit(BANNER)
        return Endpoint(self._server.url, self._server.token, model="scripted", label=SCRIPTED_LABEL)

    async def aclose(self) -> None:
        if self._rerun_handle is not None:
            self._rerun_handle.cancel()  # a rerun due after the close would start the tests on a dead project
        for task in (self._task, self._tests_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.sync is not None:
            await self.sync.aclose()
        if self.workspace is not None:
            await self.workspace.aclose()
        if self.session is not None:
            await self.session.aclose()
        if self._server is not None:
            await self._server.aclose()
        if self._store is not None:
            self._store.close()

    # ---- the user's actions --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def session_id(self) -> str | None:
        """The history session the transcript is saved to."""
        return self._session_id

    def send_message(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.agent is None:
            self.transcript.notice.emit("error", "Not connected yet.")
            return
        if self.busy:
            self.transcript.notice.emit("warning", "A request is still running; press Stop first.")
            return
        self.transcript.user_message.emit(text)
        self._task = asyncio.ensure_future(self._run(text))

    async def _run(self, text: str) -> None:
        assert self.agent is not None
        self._failure_shown = False
        self.busy_changed.emit(True)
        try:
            outcome = await self.agent.run(text, on_retry=lambda why: self.transcript.notice.emit("warning", why))
            if outcome.status == "failed" and not self._failure_shown:
                self.transcript.notice.emit("error", outcome.message)  # a transport failure: no event said it
                self.transcript.response_end.emit("failed")
            elif outcome.status == "cancelled":
                self.transcript.response_end.emit("cancelled")
            # Usage is counted once, from each response's terminal event (`_on_event`).
        except Exception as exc:
            log.exception("the request failed")
            self.transcript.notice.emit("error", f"The request failed: {exc}")
            self.transcript.response_end.emit("failed")
        finally:
            self._persist_transcript()
            self._emit_stats(force=True)
            self.busy_changed.emit(False)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def run_tests(self) -> None:
        if self.agent is None or (self._tests_task is not None and not self._tests_task.done()):
            return
        self._tests_task = asyncio.ensure_future(self._run_tests())

    async def _run_tests(self) -> None:
        from app.adapters.proc import detect_test_command, run_tests

        cmd = detect_test_command(self.project_root)
        if cmd.runner == "none":
            self.transcript.notice.emit("info", cmd.note or "No test suite found.")
            return
        await run_tests(cmd, on_event=self._on_test_event)
        if self._rerun_wanted:  # files changed again while the tests ran
            self._rerun_wanted = False
            self._schedule_rerun()

    def _on_disk_changed(self) -> None:
        """Rerun-on-save: a settled batch of changes reruns the tests (debounced, never overlapping)."""
        if not self.settings.rerun_tests_on_save or self.busy:
            return  # while the agent works, it runs the tests itself
        if self._tests_task is not None and not self._tests_task.done():
            self._rerun_wanted = True
            return
        self._schedule_rerun()

    def _schedule_rerun(self) -> None:
        if self._rerun_handle is not None:
            self._rerun_handle.cancel()
        self._rerun_handle = asyncio.get_running_loop().call_later(0.3, self.run_tests)

    def pin(self, path: str, pinned: bool) -> None:
        pins = [p for p in self.settings.pins if p != path] + ([path] if pinned else [])
        self.settings.pins = pins
        if self.workspace is not None:
            self.workspace.pins = list(pins)
        self._save_settings_quietly()

    def undo_last_patch(self) -> None:
        if self.agent is None:
            return
        try:
            paths = self.agent.undo_last()
        except Exception as exc:
            self.transcript.notice.emit("error", f"Undo failed: {exc}")
            return
        if paths:
            self.transcript.notice.emit("info", "Undid the last patch: " + ", ".join(paths))
        else:
            self.transcript.notice.emit("info", "There is no patch to undo.")

    # ---- approvals -----------------------------------------------------------------------------

    async def _approve(self, kind: str, title: str, payload: dict[str, Any]) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def resolve(decision: dict[str, Any]) -> None:
            if not fut.done():
                fut.set_result(decision)

        request = ApprovalRequest(kind, title, payload, resolve)  # type: ignore[arg-type]
        self.approval_requested.emit(request)
        try:
            return await fut
        except asyncio.CancelledError:  # Stop: the agent no longer waits for this answer
            request.withdrawn.emit()
            raise

    # ---- events -> the UI ----------------------------------------------------------------------

    def _on_state(self, state: str, detail: str) -> None:
        url = self.endpoint.url if self.endpoint else ""
        self.connection_changed.emit(ConnectionStatus(state, detail, self._engine_label, url))  # type: ignore[arg-type]

    def _on_test_event(self, e: Mapping[str, Any]) -> None:
        kind = str(e.get("kind", ""))
        if kind == "phase":
            kind = str(e.get("category") or e.get("outcome") or "passed") if e.get("when") == "call" or \
                e.get("category") in ("failed", "error", "skipped") else ""
            if not kind:
                return
        self.test_event.emit(TestEvent(kind, str(e.get("nodeid", "")), float(e.get("duration") or 0.0),
                                       str(e.get("text", "")), dict(e)))

    def _on_event(self, e: ev.ServerEvent) -> None:
        t = self.transcript
        if isinstance(e, ev.OutputTextDelta):
            t.text_delta.emit(e.item_id, e.delta)
            self._rate.add(len(e.delta))
            self._emit_stats()
        elif isinstance(e, (ev.ReasoningTextDelta, ev.ReasoningSummaryTextDelta)):
            t.reasoning_delta.emit(e.item_id, e.delta)
        elif isinstance(e, ev.FunctionCallArgumentsDelta):
            t.tool_args_delta.emit(e.item_id, e.delta)
            self._rate.add(len(e.delta))
        elif isinstance(e, ev.ResponseCreated):
            t.assistant_begin.emit(e.response_id)
        elif isinstance(e, ev.OutputItemAdded):
            item = e.item
            if item.get("type") == "function_call":
                t.tool_call_begin.emit(str(item.get("id", "")), str(item.get("name", "")), str(item.get("call_id", "")))
        elif isinstance(e, ev.OutputItemDone):
            t.item_end.emit(str(e.item.get("id", "")))
        elif isinstance(e, (ev.ResponseCompleted, ev.ResponseIncomplete, ev.ResponseFailed)):
            status = {ev.ResponseCompleted: "completed", ev.ResponseIncomplete: "incomplete"}.get(type(e), "failed")
            if isinstance(e, ev.ResponseFailed):
                err = e.response.get("error") or {}
                t.notice.emit("error", f"The model failed: {err.get('message', 'unknown error')}")
                self._failure_shown = True
            t.response_end.emit(status)
            self._account(e.response.get("usage") or {})
        elif isinstance(e, ev.ErrorEvent) and e.error.code not in RECOVERED_ERRORS:
            t.notice.emit("error", f"{e.error.message} ({e.error.code})" if e.error.code else e.error.message)
            t.response_end.emit("failed")
            self._failure_shown = True

    def _account(self, usage: Mapping[str, Any]) -> None:
        if not usage:
            return
        details = usage.get("input_tokens_details") or {}
        inp = int(usage.get("input_tokens") or 0)
        cached = int(details.get("cached_tokens") or 0)
        s = self._stats
        self._stats = StreamStats(s.tokens_per_s_now, s.tokens_per_s_peak, inp, inp, cached,
                                  s.session_input_tokens + inp, s.session_cached_tokens + cached)
        self._emit_stats(force=True)

    def _emit_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._stats_due:
            return
        self._stats_due = now + 0.25
        s = self._stats
        rate = self._rate.now()
        self._stats = StreamStats(rate, self._rate.peak, s.context_tokens, s.last_turn_input_tokens,
                                  s.last_turn_cached_tokens, s.session_input_tokens, s.session_cached_tokens)
        self.stats_changed.emit(self._stats)

    # ---- history -------------------------------------------------------------------------------

    def _history(self) -> HistoryStore | None:
        if self._store is None:
            try:
                self._store = HistoryStore()
            except StoreError as exc:
                self.transcript.notice.emit("warning", f"History is off: {exc}")
                return None
        return self._store

    def _open_history(self, session_id: str | None = None) -> None:
        store = self._history()
        if store is None:
            return
        rec = store.get_session(session_id) if session_id else store.last_session(self.project_root)
        if rec is None:
            rec = store.create_session(self.project_root)
        self._session_id = rec.id
        items = [i.data["item"] if i.kind == "user_message" else i.data
                 for i in store.items(rec.id) if i.kind in ("item", "user_message")]
        items = _pair_calls(items)
        self._persisted = len(items)
        if items and self.session is not None:
            self.session.client.restore(items)
            self._replay(items)
            self.transcript.notice.emit("info", f"Restored the session “{rec.title or 'untitled'}” "
                                                f"({len(items)} items); the chain is rebuilt on the next turn.")

    def _replay(self, items: Sequence[Mapping[str, Any]]) -> None:
        t = self.transcript
        for n, item in enumerate(items):
            kind = item.get("type")
            if kind == "message" and item.get("role") == "user":
                t.user_message.emit(_text_of(item))
            elif kind == "message":
                rid = f"restored-{n}"
                t.assistant_begin.emit(rid)
                t.text_delta.emit(str(item.get("id") or rid), _text_of(item))
                t.item_end.emit(str(item.get("id") or rid))
                t.response_end.emit("completed")
            elif kind == "function_call":
                iid = str(item.get("id") or f"fc-{n}")
                t.tool_call_begin.emit(iid, str(item.get("name", "")), str(item.get("call_id", "")))
                t.tool_args_delta.emit(iid, str(item.get("arguments", "")))
                t.item_end.emit(iid)
            elif kind == "function_call_output":
                t.tool_output.emit(str(item.get("call_id", "")), str(item.get("output", "")), True)

    def _persist_transcript(self) -> None:
        store = self._history()
        if store is None or self._session_id is None or self.session is None:
            return
        items = [i for i in self.session.client.transcript() if not is_context_item(i)]
        try:
            for item in items[self._persisted:]:
                if item.get("type") == "message" and item.get("role") == "user":
                    store.append_item(self._session_id, "user_message", {"text": _text_of(item), "item": dict(item)})
                else:
                    store.append_item(self._session_id, "item", dict(item))
            store.set_chain_head(self._session_id, "default", self.session.client.head())
        except StoreError as exc:
            self.transcript.notice.emit("warning", f"Could not save the history: {exc}")
            return
        self._persisted = len(items)

    def list_sessions(self) -> list[SessionInfo]:
        store = self._history()
        if store is None:
            return []
        return [SessionInfo(r.id, r.title or "untitled", r.project, r.updated_at, r.turns)
                for r in store.list_sessions(self.project_root)]

    def _switch_refused(self) -> bool:
        """Sessions switch only between requests: a context push in flight holds the transcript too."""
        if self.busy or self.session is None or self.session.busy:
            self.transcript.notice.emit("warning", "Finish or stop the running request first, then try again.")
            return True
        return False

    def open_session(self, session_id: str) -> None:
        if self._switch_refused():
            return
        assert self.session is not None
        self.session.client.restore([])
        self.transcript.cleared.emit()
        self._open_history(session_id)

    def new_session(self) -> None:
        store = self._history()
        if store is None or self._switch_refused():
            return
        assert self.session is not None
        rec = store.create_session(self.project_root)
        self._session_id = rec.id
        self._persisted = 0
        self.session.client.restore([])
        self.transcript.cleared.emit()
        self.transcript.notice.emit("info", "New session started.")

    # ---- settings and keys (SettingsFacade) ----------------------------------------------------

    def _secret_store(self) -> SecretStore:
        if self._secrets is None:
            self._secrets = SecretStore(allow_env_fallback=self.settings.allow_env_key_fallback)
        return self._secrets

    def save_settings(self, settings: Settings) -> None:
        settings.validate()
        self.settings = settings
        if self.agent is not None:
            self.agent.config.approval_policy = settings.approval_policy
            self.agent.config.max_tool_turns = settings.max_tool_turns
        if self.workspace is not None:
            self.workspace.pins = list(settings.pins)
            self.workspace.budget = settings.context_budget_tokens
        # A store not made yet is made from these settings when first needed: saving the recent projects
        # at start must not load the keychain backends (60 ms on the GUI thread, and their memory).
        if self._secrets is not None:
            self._secrets.allow_env_fallback(settings.allow_env_key_fallback)
        if self._persist:
            save_settings(settings)

    def _save_settings_quietly(self) -> None:
        try:
            self.save_settings(self.settings)
        except Exception as exc:
            self.transcript.notice.emit("warning", f"Could not save settings: {exc}")

    def keychain_info(self) -> KeychainInfo:
        st = self._secret_store().status(self.settings.provider)
        return KeychainInfo(st.available, st.backend, st.message)

    def has_api_key(self, provider: str) -> bool:
        return self._secret_store().has(provider)

    def set_api_key(self, provider: str, key: str) -> None:
        self._secret_store().set(provider, key)


def _pair_calls(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A restored transcript whose last calls never got outputs (the app quit mid-loop) would be refused
    upstream; answer each such call with a stub saying so, right after it."""
    answered = {str(i.get("call_id")) for i in items if i.get("type") == "function_call_output"}
    out: list[dict[str, Any]] = []
    for item in items:
        out.append(item)
        if item.get("type") == "function_call" and str(item.get("call_id")) not in answered:
            out.append({"type": "function_call_output", "call_id": str(item.get("call_id", "")),
                        "output": "not run: Slipstream was closed before this call ran"})
    return out


def _ws_url(url: str) -> str:
    """Accept http(s) bases too: http://host/v1 -> ws://host/v1/responses."""
    if url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    return url if url.rstrip("/").endswith("/responses") else url.rstrip("/") + "/responses"


def _text_of(item: Mapping[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(c.get("text", "")) for c in content if isinstance(c, Mapping))
    return ""


def create_services(root: Path, settings: Settings) -> AppServices:
    """The factory `app.ui.app` calls for each project it opens."""
    return AppServices(root, settings)
