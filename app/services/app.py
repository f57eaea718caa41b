"""`AppServices`: the real implementation of the UI's façade (`app.services.api.Services`).

It composes everything below the UI for one project folder: the endpoint (a scripted
`slipstream serve` of its own when no model is configured), the one `ResponsesSession`, the
`Workspace` and its `ContextSync`, the tool-loop `Agent`, and the parts with one concern each:
`History` (stored sessions), `Approvals` (questions to the user), `Stats` (the status bar's figures)
and `LiveTests` (the Tests panel's run). It owns the conversation model (`conversation`) and feeds it
the protocol events, live and when a session is restored; the UI paints it. Everything here runs on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import get_args

from app.adapters.local_server import ServerHandle
from app.adapters.secrets import SecretStore
from app.adapters.store import HistoryStore
from app.protocol import events as ev
from app.render.highlight import warm as warm_highlighting
from app.render.markdown import warm_inline
from app.render.transcript import NoticeKind, Transcript, ends_in_failure
from app.services import endpoints
from app.services.agent import Agent, AgentConfig
from app.services.api import (
    ApprovalRequest,
    ConnectionState,
    ConnectionStatus,
    FileChanges,
    Services,
    SessionInfo,
    SideConversation,
    StreamStats,
)
from app.services.approvals import Approvals
from app.services.endpoints import SCRIPTED_LABEL
from app.services.history import History
from app.services.inspector import Inspector, SendRecord, request_summary
from app.services.lanes import SharedSocket, SideLanes
from app.services.live_tests import LiveTests
from app.services.providers import PROVIDERS
from app.services.session import Endpoint, ResponsesSession, SentFrame, TurnResult, is_http_url
from app.services.settings import KeychainInfo, Settings, save_settings
from app.services.signals import Signal
from app.services.stats import Stats
from app.services.workspace import ContextSync, Workspace
from app.tools.digest import RerunRefused
from app.tools.specs import CommandPolicy
from app.tools.testrun import TestRun

log = logging.getLogger(__name__)


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
        self._secrets = secrets
        self._fixed_endpoint = endpoint
        self._persist = persist_settings
        self._watch = watch
        self.conversation = Transcript()
        self.history = History(self.project_root, store, self._notice)
        self.approvals = Approvals()
        self.stats = Stats()
        self.inspector = Inspector()  # what went on the wire, request by request
        self.tests = LiveTests(
            self.project_root,
            notice=self._notice,
            rerun_on_save=lambda: self.settings.rerun_tests_on_save,
            agent_busy=lambda: self.busy,
            failed_targets=self._failed_targets,
            finished=self._test_run_finished,
        )
        self.connection_changed: Signal[[ConnectionStatus]] = Signal("connection_changed")
        self.files_changed: Signal[[FileChanges]] = Signal("files_changed")
        self.busy_changed: Signal[[bool]] = Signal("busy_changed")
        self.banner_changed: Signal[[str]] = Signal("banner_changed")
        self._server: ServerHandle | None = None
        self.endpoint: Endpoint | None = None
        self.session: ResponsesSession | None = None
        self.workspace: Workspace | None = None
        self.sync: ContextSync | None = None
        self.agent: Agent | None = None
        self.hub: SharedSocket | None = None  # the agent's socket, shared with side lanes
        self.side: SideLanes | None = None
        self.side_opened: Signal[[SideConversation]] = Signal("side_opened")
        self.side_removed: Signal[[SideConversation]] = Signal("side_removed")
        self._task: asyncio.Task[None] | None = None
        self._engine_label = ""
        self._warm: asyncio.Future[None] | None = None
        self._failure_shown = False  # this request's failure already reached the transcript through an event
        self._encrypted_reasoning = False
        self.banner = ""  # what the banner says now ("" = hidden)
        self._restart: asyncio.Task[None] | None = None
        self._key_changed = False  # a key was stored since the endpoint was resolved
        self._connected_once = True  # the endpoint in use answered once (False: watch the first attempt)

    # the façade's models and signals (see app.services.api.Services) ------------------------------

    @property
    def test_run(self) -> TestRun:
        return self.tests.model

    @property
    def approval_requested(self) -> Signal[[ApprovalRequest]]:
        return self.approvals.requested

    @property
    def stats_changed(self) -> Signal[[StreamStats]]:
        return self.stats.changed

    def _failed_targets(self) -> list[str]:
        if self.agent is None:
            raise RerunRefused("no test run yet")
        return self.agent.failed_targets()

    def _test_run_finished(self, run: TestRun, label: str) -> None:
        """A run the user started: the model's next request carries its digest, and it is the run
        that Rerun failed reruns."""
        if self.agent is not None:
            self.agent.note_test_run(run, label=label)

    def _notice(self, kind: NoticeKind, text: str) -> None:
        self.conversation.add_notice(kind, text)

    def _notice_from(self, kind: str, text: str) -> None:
        """A notice from a part that speaks plain strings (the workspace, the agent)."""
        self._notice(kind if kind in _NOTICE_KINDS else "info", text)  # type: ignore[arg-type]

    # ---- lifecycle -----------------------------------------------------------------------------

    def _warm_rendering(self) -> None:
        """Build the syntax highlighter's lexers and the inline markdown parser in a worker, once, as soon
        as a conversation may show them (a turn is asked for, a session restored): not in the first frame
        with code, and not in an app that has no conversation yet (~4 MB it would hold for nothing)."""
        if self._warm is None:
            self._warm = asyncio.get_running_loop().run_in_executor(None, _build_renderers)

    async def start(self) -> None:
        """Connect (starting a scripted server when no model is configured), index, warm up."""
        ws = Workspace(
            self.project_root,
            budget_tokens=self.settings.context_budget_tokens,
            pins=self.settings.pins,
            user_ignores=self.settings.ignore_patterns,
            # the watch is armed once the first snapshot settled, then catches up: watchdog's walk of
            # the tree (Python, under the GIL) is not in the way of the first snapshot
            watch_after_ready=True,
        )
        self.workspace = ws
        ws.files_changed.connect(self.files_changed.emit)  # changed rows only, built off the loop
        ws.changed.connect(self.tests.on_disk_changed)
        ws.notice.connect(self._notice_from)
        # The index runs on the workspace's worker while the endpoint (maybe a server child) comes up.
        indexing = asyncio.ensure_future(ws.start(watch=self._watch))
        try:
            self.endpoint = await self._resolve_endpoint()
        except BaseException:
            indexing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await indexing
            with contextlib.suppress(Exception):  # the watcher may have started meanwhile: stop it too
                await ws.aclose()
            raise
        self._connect(self.endpoint)
        self._open_history()
        self.tests.enabled = True
        await indexing
        if self.sync is not None:  # (a settings change may be reconnecting meanwhile)
            self.sync.push_soon()  # the warm-up: snapshot of the project on a fresh chain

    def _connect(self, endpoint: Endpoint) -> None:
        """The session, its context sync and the tool loop, on `endpoint` (at start, and again each
        time Settings change where turns go)."""
        ws = self.workspace
        assert ws is not None
        if not is_http_url(endpoint.url):
            self.hub = SharedSocket()
            session = ResponsesSession(endpoint, rebuild=ws.rebuild, connect=self.hub.connector(None))
        else:
            self.hub = None
            session = ResponsesSession(endpoint, rebuild=ws.rebuild)
        self.session = session
        self.side = SideLanes(
            endpoint,
            hub=self.hub,
            main_transcript=lambda: session.client.transcript(),
            settings=lambda: dict(self.agent.extra_settings) if self.agent else {},
        )
        self.side.opened.connect(self.side_opened.emit)
        self.side.removed.connect(self.side_removed.emit)
        session.state_changed.connect(self._on_state)
        session.sent.connect(self._on_sent)
        session.ended.connect(self._on_ended)
        self.sync = ContextSync(ws, session)
        policy = self.settings.approval_policy
        cmd_policy = CommandPolicy("ask")
        self.agent = Agent(
            self.sync,
            ws.files,
            config=AgentConfig(
                approval_policy=policy, command_policy=cmd_policy, max_tool_turns=self.settings.max_tool_turns
            ),
            approve=self.approvals.ask,
            on_event=self._on_event,
            on_tool_output=self.conversation.add_tool_output,
            on_test_event=self.tests.on_event,
            on_notice=self._notice,
        )
        if self._encrypted_reasoning:
            self.agent.extra_settings = {"include": ["reasoning.encrypted_content"]}
            self.sync.settings = self.agent.settings()

    async def _resolve_endpoint(self) -> Endpoint:
        """The one resolver shared with the headless commands (app.services.endpoints).

        Why the configured endpoint could not be used goes to the banner (with the fallback said), not
        into the conversation: at start it would sit above a restored session where nobody sees it."""
        if self._fixed_endpoint is not None:
            self._engine_label = self._fixed_endpoint.label or self._fixed_endpoint.model
            return self._fixed_endpoint
        problems: list[str] = []
        try:
            resolved = await endpoints.resolve(
                self.settings,
                lambda p: self._secret_store().get(p),
                lambda _kind, text: problems.append(text),
            )
        except endpoints.EndpointUnavailable as exc:
            self.connection_changed.emit(ConnectionStatus("error", str(exc), SCRIPTED_LABEL))
            self._set_banner(f"**Slipstream could not start an engine.** {exc}")
            raise
        self._server = resolved.server
        self._engine_label = resolved.label
        self._encrypted_reasoning = resolved.encrypted_reasoning
        self._connected_once = False
        if problems:
            self._set_banner(failure_banner(self.settings, problems))
        else:
            self._set_banner(resolved.banner)
        return resolved.endpoint

    def _set_banner(self, text: str) -> None:
        self.banner = text
        self.banner_changed.emit(text)

    async def detect_local_servers(self) -> list[tuple[str, str, list[str]]]:
        """Chat Completions servers answering on their default loopback ports: (label, url, models)."""
        from app.services.providers import detect_local_servers

        found = await detect_local_servers()
        return [(d.label, d.url, list(d.models)) for d in found]

    async def aclose(self) -> None:
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm  # a few hundred ms at most; the executor's thread is the loop's
        await self.tests.aclose()
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._restart
        if self.side is not None:  # first: a side lane must not retry on the socket the agent's Stop drops
            await self.side.aclose()
        task = self._task
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
        if self.hub is not None:
            await self.hub.aclose()
        if self._server is not None:
            await self._server.aclose()
        self.history.close()

    # ---- the user's actions --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def session_id(self) -> str | None:
        """The history session the transcript is saved to."""
        return self.history.session_id

    def send_message(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.agent is None:
            self._notice("error", "Not connected yet.")
            return
        if self.busy:
            self._notice("warning", "A request is still running; press Stop first.")
            return
        self._warm_rendering()
        self.conversation.add_user_message(text)
        self._task = asyncio.ensure_future(self._run(text))

    async def _run(self, text: str) -> None:
        assert self.agent is not None
        self._failure_shown = False
        self.busy_changed.emit(True)
        try:
            outcome = await self.agent.run(text, on_retry=lambda why: self._notice("warning", why))
            self._summarise_request(outcome.last)
            if outcome.status == "failed" and not self._failure_shown:
                self._notice("error", outcome.message)  # a transport failure: no event said it
                self.conversation.end_response("failed")
            elif outcome.status == "cancelled":
                self.conversation.end_response("cancelled")
            # Usage is counted once, from each response's terminal event (`Stats.on_event`).
        except Exception as exc:
            log.exception("the request failed")
            self._notice("error", f"The request failed: {exc}")
            self.conversation.end_response("failed")
        finally:
            self._persist_transcript()
            self.stats.publish()
            self.busy_changed.emit(False)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def run_tests(self) -> None:
        self.tests.run()

    def rerun_failed(self) -> None:
        """Rerun exactly the failed tests of the last run (the agent's or the user's)."""
        self.tests.rerun_failed()

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
            self._notice("error", f"Undo failed: {exc}")
            return
        if paths:
            self._notice("info", "Undid the last patch: " + ", ".join(paths))
        else:
            self._notice("info", "There is no patch to undo.")

    # ---- side conversations (app.services.lanes) ------------------------------------------------

    def ask_side(self, text: str, side_id: str | None = None) -> SideConversation | None:
        """A side question: a new side conversation, or the next turn of `side_id`'s."""
        if self.side is None:
            self._notice("error", "Not connected yet.")
            return None
        self._warm_rendering()
        if side_id is None:
            return self.side.open(text)
        lane = self.side.lanes.get(side_id)
        if lane is not None:
            lane.ask(text)
        return lane

    def close_side(self, side_id: str) -> None:
        if self.side is not None:
            self.side.close_soon(side_id)

    def promote_side(self, side_id: str) -> None:
        """The side conversation becomes a stored session; opened at once when the agent is idle."""
        lane = self.side.lanes.get(side_id) if self.side is not None else None
        if lane is None or self.side is None:
            return
        if lane.busy:
            lane.conversation.add_notice("warning", "Wait for the answer to finish, then promote it.")
            return
        new_id = self.history.save_new(lane.items(), lane.title)
        if new_id is None:
            lane.conversation.add_notice("warning", "History is off: the side conversation cannot be saved.")
            return
        self.side.close_soon(side_id)
        if self.busy or self.session is None or self.session.busy:
            self._notice(
                "info",
                f"Saved the side conversation “{lane.title}” as a session; "
                "open it from Sessions when the agent is done.",
            )
        else:
            self.open_session(new_id)

    # ---- events -> the conversation, the status bar --------------------------------------------

    def _on_state(self, state: ConnectionState, detail: str) -> None:
        self.connection_changed.emit(self.connection_status(state, detail))
        if self._connected_once:
            return
        if state == "warm":
            self._connected_once = True
            if self.banner.startswith(UNREACHABLE):
                self._set_banner("")
        elif state in ("error", "offline", "reconnecting") and detail and detail != "closed":
            self._set_banner(
                f"{UNREACHABLE} **{self._engine_label}**: {detail}. Slipstream keeps trying; "
                "check the endpoint, model and key in Settings."
            )

    def connection_status(
        self, state: ConnectionState | None = None, detail: str | None = None
    ) -> ConnectionStatus:
        """The status bar's whole truth: state, transport, attempt, early renewal, rebuilds, first token."""
        s = self.session
        url = self.endpoint.url if self.endpoint else ""
        if s is None:
            return ConnectionStatus(state or "connecting", detail or "", self._engine_label, url)
        insp = self.inspector
        causes = tuple(sorted(insp.rebuilds.items(), key=lambda kv: -kv[1]))
        return ConnectionStatus(
            state or s.state,
            s.detail if detail is None else detail,
            self._engine_label,
            url,
            transport=s.transport,
            attempt=s.attempt,
            max_attempts=s.max_attempts,
            rotate_at=s.rotate_at(),
            rebuilds=insp.rebuild_count,
            rebuild_causes=causes,
            ttft_ms=s.last_ttft_ms,
            sent_ratio=insp.ratio if insp.requests else None,
        )

    def _on_sent(self, sent: SentFrame) -> None:
        self.inspector.record_send(
            sent.frame, transport=sent.transport, fresh_cause=sent.fresh_cause, transcript=sent.transcript
        )

    def _on_ended(self, result: TurnResult) -> None:
        self.inspector.record_end(
            status=result.status,
            response_id=result.response_id,
            usage=result.usage,
            ttft_ms=result.ttft_ms,
            error=result.error,
            kept_chain=result.kept_chain,
        )
        self.connection_changed.emit(self.connection_status())  # ratio, rebuilds, first token

    def _summarise_request(self, last: TurnResult | None) -> None:
        """One muted line under the answer: what its last request sent, with a way to inspect it."""
        rec = self.inspector.last
        if last is None or rec is None or rec.kind != "turn" or last.status == "cancelled":
            return
        if last.response_id is None or rec.response_id != last.response_id:
            return
        self._notice_ref(rec)

    def _notice_ref(self, rec: SendRecord) -> None:
        self.conversation.add_notice("status", request_summary(rec), ref=rec.response_id or "")

    def _on_event(self, e: ev.ServerEvent) -> None:
        """Every event of a turn, as it arrives: into the conversation (buffered) and the figures."""
        self.conversation.apply(e)
        self.stats.on_event(e)
        if ends_in_failure(e):
            self._failure_shown = True

    # ---- history -------------------------------------------------------------------------------

    def _open_history(self, session_id: str | None = None) -> None:
        items = self.history.open(session_id)
        if items and self.session is not None:
            self._warm_rendering()
            self.session.client.restore(items)
            self.conversation.restore(items)
            self._notice(
                "info",
                f"Restored the session “{self.history.title}” "
                f"({len(items)} items); the chain is rebuilt on the next turn.",
            )

    def _persist_transcript(self) -> None:
        if self.session is not None:
            self.history.persist(self.session.client.transcript(), self.session.client.head())

    def list_sessions(self) -> list[SessionInfo]:
        return self.history.sessions()

    def _switch_refused(self) -> bool:
        """Sessions switch only between requests: a context push in flight holds the transcript too."""
        if self.busy or self.session is None or self.session.busy:
            self._notice("warning", "Finish or stop the running request first, then try again.")
            return True
        return False

    def open_session(self, session_id: str) -> None:
        if self._switch_refused():
            return
        assert self.session is not None
        self.session.client.restore([])
        self.conversation.clear()
        self._open_history(session_id)

    def new_session(self) -> None:
        if self._switch_refused() or not self.history.create():
            return
        assert self.session is not None
        self.session.client.restore([])
        self.conversation.clear()
        self._notice("info", "New session started.")

    # ---- settings and keys (SettingsFacade) ----------------------------------------------------

    def _secret_store(self) -> SecretStore:
        if self._secrets is None:
            self._secrets = SecretStore(allow_env_fallback=self.settings.allow_env_key_fallback)
        return self._secrets

    def save_settings(self, settings: Settings) -> None:
        """Validate, apply, persist; a change of where turns go (provider, endpoint, model, the key or
        the environment opt-in) reconnects live (`apply_endpoint`)."""
        settings.validate()
        old = self.settings
        self.settings = settings
        if self.agent is not None:
            self.agent.config.approval_policy = settings.approval_policy
            self.agent.config.max_tool_turns = settings.max_tool_turns
        if self.workspace is not None:
            self.workspace.pins = list(settings.pins)
            self.workspace.budget = settings.context_budget_tokens
            self.workspace.set_user_ignores(settings.ignore_patterns)
        # A store not made yet is made from these settings when first needed: saving the recent projects
        # at start must not load the keychain backends (60 ms on the GUI thread, and their memory).
        if self._secrets is not None:
            self._secrets.allow_env_fallback(settings.allow_env_key_fallback)
        if self._persist:
            save_settings(settings)
        if needs_restart(old, settings) or self._key_changed:
            self.apply_endpoint()

    def apply_endpoint(self) -> None:
        """Move to the endpoint the settings name now, in the background: the old session, its server
        child and chain go; the conversation carries over onto a fresh chain. The banner shows the
        progress and the outcome (a failure with its reason). Nothing happens before `start()`."""
        if self.session is None or self._fixed_endpoint is not None:
            return
        self._key_changed = False
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
        self._restart = asyncio.ensure_future(self._reconnect(self._restart))

    async def _reconnect(self, earlier: asyncio.Task[None] | None) -> None:
        if earlier is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await earlier
        if self.busy:  # the running turn belongs to the old endpoint
            self.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)  # type: ignore[arg-type]
        s = self.settings
        self._set_banner(
            f"Applying the new settings: connecting to {PROVIDER_LABELS.get(s.provider, s.provider)}"
            f"{' at ' + s.endpoint if s.endpoint else ''}…"
        )
        self.connection_changed.emit(
            ConnectionStatus("connecting", "applying the new settings", self._engine_label)
        )
        old_session, old_sync, old_server = self.session, self.sync, self._server
        items = [dict(i) for i in old_session.client.transcript()] if old_session is not None else []
        self.agent = None  # no turn starts on the old endpoint meanwhile
        if old_sync is not None:
            await old_sync.aclose()
        old_side, old_hub = self.side, self.hub
        self.side = self.hub = None
        if old_side is not None:  # side conversations belong to the old endpoint too
            await old_side.aclose()
        if old_session is not None:
            old_session.state_changed.disconnect(self._on_state)
            await old_session.aclose()
        if old_hub is not None:
            await old_hub.aclose()
        self.session = self.sync = None
        self._server = None
        if old_server is not None:
            await old_server.aclose()
        try:
            self.endpoint = await self._resolve_endpoint()
        except endpoints.EndpointUnavailable:
            return  # the banner says why; the app stays offline until Settings change again
        self._connect(self.endpoint)
        assert self.session is not None and self.sync is not None
        self.session.client.restore(items)  # the conversation goes on, on a fresh chain
        if not self.banner.startswith(("**Settings not applied", "No model is configured")):
            self._set_banner("")
        self._notice("info", f"Settings applied: now using {self._engine_label}.")
        if self.workspace is not None:
            await self.workspace.new_chain()
        self.sync.push_soon()  # the warm-up on the new endpoint; a failure reaches the banner (_on_state)

    def _save_settings_quietly(self) -> None:
        try:
            self.save_settings(self.settings)
        except Exception as exc:
            self._notice("warning", f"Could not save settings: {exc}")

    def keychain_info(self) -> KeychainInfo:
        st = self._secret_store().status(self.settings.provider)
        return KeychainInfo(st.available, st.backend, st.message)

    def has_api_key(self, provider: str) -> bool:
        return self._secret_store().has(provider)

    def set_api_key(self, provider: str, key: str) -> None:
        self._secret_store().set(provider, key)
        self._key_changed = True  # the next save_settings reconnects with it


_NOTICE_KINDS = frozenset(get_args(NoticeKind))
# The settings that decide where turns go: changing one reconnects.
RESTART_FIELDS = ("provider", "endpoint", "model", "allow_env_key_fallback")
UNREACHABLE = "**Cannot reach**"
PROVIDER_LABELS = {p.id: p.label for p in PROVIDERS.values()}


def _build_renderers() -> None:
    warm_highlighting()
    warm_inline()


def needs_restart(old: Settings, new: Settings) -> bool:
    return any(getattr(old, f) != getattr(new, f) for f in RESTART_FIELDS)


def failure_banner(settings: Settings, problems: list[str]) -> str:
    """The banner for settings that could not be used: the reason, the fallback, the fix."""
    what = PROVIDER_LABELS.get(settings.provider, settings.provider)
    reasons = " ".join(problems)
    return (
        f"**Settings not applied: {what} cannot be used.** {reasons} Meanwhile Slipstream runs its scripted "
        "engine (offline, no model)."
    )


def create_services(root: Path, settings: Settings) -> Services:
    """The factory the composition root calls for each project it opens (typed: mypy checks that
    `AppServices` satisfies the `Services` protocol here)."""
    return AppServices(root, settings)
