"""Live tests: the project's test run the Tests panel shows, run on request and on save.

The services own one `app.tools.testrun.TestRun` per project (`model`); every plugin event, from a
run started here or by the agent's run_tests tool, is folded into it, and the panel paints it.
Rerun-on-save is debounced (`RERUN_DELAY_S`) and never overlaps a running suite: changes that land
while the tests run schedule one more run after it. "Rerun failed" runs exactly the failed node ids of
the last run (`failed_targets()`, the agent's checked list), after "--" like any target. Each run
that ends here is handed to `finished(run, label)`: the agent makes it the last run and sends its
digest with the model's next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.adapters.proc import detect_test_command, run_tests
from app.render.transcript import NoticeKind
from app.tools.digest import RerunRefused
from app.tools.testrun import TestRun

__all__ = ["RERUN_DELAY_S", "LiveTests"]

RERUN_DELAY_S = 0.3


class LiveTests:
    """See the module docstring. `rerun_on_save()` and `agent_busy()` are read when files change."""

    def __init__(
        self,
        root: Path,
        *,
        notice: Callable[[NoticeKind, str], None],
        rerun_on_save: Callable[[], bool],
        agent_busy: Callable[[], bool],
        failed_targets: Callable[[], list[str]] | None = None,
        finished: Callable[[TestRun, str], None] | None = None,
    ) -> None:
        self._root = root
        self._notice = notice
        self._rerun_on_save = rerun_on_save
        self._agent_busy = agent_busy
        self._failed_targets = failed_targets
        self._finished = finished
        self.model = TestRun()
        self._task: asyncio.Task[None] | None = None
        self._rerun_wanted = False
        self._rerun_handle: asyncio.TimerHandle | None = None
        self.enabled = False  # the services started: runs may begin

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def on_event(self, event: Mapping[str, Any]) -> None:
        """One plugin event (from any run): into the panel's model."""
        self.model.apply(event)

    def run(self) -> None:
        if not self.enabled or self.running:
            return
        self._task = asyncio.ensure_future(self._run())

    def rerun_failed(self) -> None:
        """Only the tests that failed in the last run (a notice says why when there are none)."""
        if not self.enabled or self.running:
            return
        self._task = asyncio.ensure_future(self._run(failed_only=True))

    async def _run(self, *, failed_only: bool = False) -> None:
        targets: list[str] = []
        if failed_only:
            try:
                if self._failed_targets is None:
                    raise RerunRefused("no test run yet")
                targets = self._failed_targets()
            except ValueError as exc:  # RerunRefused, or an id whose file is not a project path
                self._notice("info", f"Nothing to rerun: {exc}.")
                return
        cmd = detect_test_command(self._root, targets=targets)
        if cmd.runner == "none":
            self._notice("info", cmd.note or "No test suite found.")
            return
        run = await run_tests(cmd, on_event=self.on_event)
        if self._finished is not None:
            n = len(targets)
            self._finished(
                run,
                f"The user reran the {n} failed test{'s' if n != 1 else ''}"
                if failed_only
                else "The user ran the tests",
            )
        if self._rerun_wanted:  # files changed again while the tests ran
            self._rerun_wanted = False
            self._schedule_rerun()

    def on_disk_changed(self) -> None:
        """Rerun-on-save: a settled batch of changes reruns the tests (debounced, never overlapping)."""
        if not self._rerun_on_save() or self._agent_busy():
            return  # while the agent works, it runs the tests itself
        if self.running:
            self._rerun_wanted = True
            return
        self._schedule_rerun()

    def _schedule_rerun(self) -> None:
        if self._rerun_handle is not None:
            self._rerun_handle.cancel()
        self._rerun_handle = asyncio.get_running_loop().call_later(RERUN_DELAY_S, self.run)

    async def aclose(self) -> None:
        self.enabled = False
        if self._rerun_handle is not None:
            self._rerun_handle.cancel()  # a rerun due after the close would start the tests on a dead project
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
