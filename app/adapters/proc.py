"""Subprocesses: streamed output, an output cap that keeps the tail, timeouts, process-group kill.

`run_process` is the one way the app runs a command (run_command, test runners). The child gets a
session of its own (start_new_session=True), so Stop and timeouts kill the whole process group
(os.killpg: TERM, then KILL after a grace period), grandchildren included.

`run_tests` runs a project's tests: pytest in the project's own interpreter with our zero-dependency
plugin (pytest_plugin.py) streaming one JSON event per phase over an inherited pipe, apart from
the tests' stdout; any other runner streams its output and is judged by its exit status plus the
summary line where the runner prints a known one. Partial results survive a timeout or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.runtime import check_private_dir, runtime_dir
from app.tools.testrun import EventDecoder, TestRun, parse_summary_line

__all__ = [
    "OutputTail",
    "ProcResult",
    "TestCommand",
    "check_private_dir",
    "detect_test_command",
    "find_python",
    "plugin_dir",
    "run_process",
    "run_tests",
    "runtime_dir",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 256 * 1024
KILL_GRACE = 2.0
PLUGIN_MODULE = "slipstream_pytest_plugin"


class OutputTail:
    """Keeps the last `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT) -> None:
        self.limit = max(1, limit)
        self._buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > 2 * self.limit:  # amortised trim
            del self._buf[: len(self._buf) - self.limit]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        data = bytes(self._buf[-self.limit :])
        text = data.decode("utf-8", "replace")
        if self.truncated:
            dropped = self.total - len(data)
            text = f"[... {dropped:,} earlier bytes of output dropped; the tail follows]\n" + text.lstrip(
                "\ufffd"
            )
        return text


@dataclass(slots=True)
class ProcResult:
    command: str
    exit_code: int | None  # None when it never started
    output: str  # the tail, at most the cap
    total_bytes: int
    truncated: bool
    timed_out: bool = False
    cancelled: bool = False
    duration: float = 0.0
    error: str = ""  # could not start: "no such command: foo"

    @property
    def signal(self) -> int | None:
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None

    def status_line(self) -> str:
        """Words for the user and the model: 'exit 0', 'timed out after 30 s (killed)', ..."""
        if self.error:
            return self.error
        if self.timed_out:
            return "timed out (process group killed)"
        if self.cancelled:
            return "stopped by the user (process group killed)"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        return f"exit status {self.exit_code}"

    def for_model(self) -> str:
        """The tool output of run_command: status, then the (capped) output."""
        head = f"$ {self.command}\n{self.status_line()} after {self.duration:.1f}s"
        if self.truncated:
            head += f"; output was {self.total_bytes:,} bytes, only the tail is kept"
        return f"{head}\n{self.output}" if self.output else head


def _kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        else:
            proc.kill()


async def run_process(
    command: Sequence[str] | str,
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    on_output: Callable[[bytes], None] | None = None,
    stop: asyncio.Event | None = None,
    pass_fds: Sequence[int] = (),
    after_start: Callable[[], None] | None = None,
) -> ProcResult:
    """Run `command` (argv, or a shell string), streaming stdout+stderr to `on_output`."""
    shown = command if isinstance(command, str) else shlex.join(command)
    tail = OutputTail(max_output)
    t0 = time.monotonic()
    kwargs: dict[str, Any] = {
        "cwd": os.fspath(cwd),
        "env": dict(env) if env is not None else None,
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.STDOUT,
        "limit": 1 << 20,
    }
    if os.name == "posix":
        kwargs["start_new_session"] = True
        kwargs["pass_fds"] = tuple(pass_fds)
    try:
        if isinstance(command, str):
            proc = await asyncio.create_subprocess_shell(command, **kwargs)
        else:
            proc = await asyncio.create_subprocess_exec(*command, **kwargs)
    except FileNotFoundError as exc:
        name = command.split()[0] if isinstance(command, str) and command.split() else str(exc.filename or "")
        return ProcResult(
            shown, None, "", 0, False, error=f"cannot run {shown!r}: no such command or folder ({name})"
        )
    except OSError as exc:
        return ProcResult(shown, None, "", 0, False, error=f"cannot run {shown!r}: {exc.strerror or exc}")
    if after_start is not None:
        after_start()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.add(chunk)
            if on_output is not None:
                on_output(chunk)

    reader = asyncio.ensure_future(pump())
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    timed_out = cancelled = False
    try:
        watch = {reader, waiter} | ({stopper} if stopper else set())
        deadline = None if timeout is None else t0 + timeout
        while not (reader.done() and waiter.done()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(watch, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            watch -= done
            if stopper is not None and stopper in done:
                cancelled = True
                break
            if not done and left is not None and time.monotonic() >= deadline:  # type: ignore[operator]
                timed_out = True
                break
            if waiter.done() and not reader.done():
                # The leader exited; a leftover child may still hold the pipe open.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), KILL_GRACE)
                if not reader.done():
                    _kill_group(proc, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
                    break
        if timed_out or cancelled:
            await _terminate(proc, waiter)
    except asyncio.CancelledError:
        await _terminate(proc, waiter)
        raise
    finally:
        if stopper is not None:
            stopper.cancel()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, KILL_GRACE)
        if not waiter.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(waiter, KILL_GRACE)
    return ProcResult(
        shown,
        proc.returncode,
        tail.text(),
        tail.total,
        tail.truncated,
        timed_out=timed_out,
        cancelled=cancelled,
        duration=time.monotonic() - t0,
    )


async def _terminate(proc: asyncio.subprocess.Process, waiter: asyncio.Future[int]) -> None:
    """TERM the whole group, then KILL it if it is still there after the grace period."""
    if os.name == "posix":
        _kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), KILL_GRACE)
    _kill_group(proc, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)  # leftovers in the group too


# ---------------------------------------------------------------------------------------------
# Tests


@dataclass(slots=True)
class TestCommand:
    """How to run a project's tests."""

    __test__ = False

    runner: str  # "pytest" | "npm" | "cargo" | "go" | "custom" | "none"
    argv: list[str] | str  # a string runs through the shell (custom commands)
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def display(self) -> str:
        return self.argv if isinstance(self.argv, str) else shlex.join(self.argv)


def plugin_dir(base: Path | None = None) -> Path:
    """A private folder holding only our pytest plugin, put first on the child's PYTHONPATH.

    It lives in the per-user 0700 runtime folder (never a predictable shared /tmp path) and is
    checked for ownership and mode before every use; our plugin file is rewritten when it differs,
    and anything else found there is removed, so nothing planted can be imported."""
    src = Path(__file__).with_name("pytest_plugin.py").read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:12]
    folder = runtime_dir(base) / f"pytest-plugin-{digest}"
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    check_private_dir(folder)
    name = f"{PLUGIN_MODULE}.py"
    for entry in os.scandir(folder):
        if entry.name != name:
            if entry.is_dir(follow_symlinks=False):
                import shutil

                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
    target = folder / name
    if target.is_symlink() or not target.exists() or target.read_bytes() != src:
        tmp = folder / f".{PLUGIN_MODULE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(src)
        os.replace(tmp, target)
        for entry in os.scandir(folder):
            if entry.name != name:
                os.unlink(entry.path)
    return folder


def find_python(root: Path, configured: str | None = None) -> str:
    """The project's interpreter: configured, else its .venv/venv, else the one running us."""
    if configured:
        return configured
    for venv in (".venv", "venv", "env"):
        for rel in ("bin/python", "Scripts/python.exe"):
            cand = root / venv / rel
            if cand.exists():
                return str(cand)
    return sys.executable


_PY_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", "conftest.py")


def _looks_python(root: Path) -> bool:
    if any((root / m).exists() for m in _PY_MARKERS):
        return True
    for folder in (root, root / "tests", root / "test"):
        if folder.is_dir() and (any(folder.glob("test_*.py")) or any(folder.glob("*_test.py"))):
            return True
    return False


def detect_test_command(
    root: Path,
    *,
    targets: Sequence[str] = (),
    python: str | None = None,
    custom: str | None = None,
    extra_args: Sequence[str] = (),
    keyword: str | None = None,
) -> TestCommand:
    """Pick the runner: a configured command, pytest, npm, cargo or go test; "none" when nothing fits.

    `targets` and `keyword` are data, never options: a target starting with "-" is refused
    (ValueError), targets follow "--" for pytest (and are "./"-anchored for go), and the keyword
    travels attached to "-k" as one argument. Only pytest takes a keyword."""
    root = root.resolve()
    for t in targets:
        if not t or t.lstrip().startswith("-") or "\x00" in t:
            raise ValueError(
                f"test target {t!r} is refused: it must be a path inside the project, not an option"
            )
    if keyword is not None and ("\x00" in keyword or "\n" in keyword or len(keyword) > 500):
        raise ValueError("the test keyword must be one line of at most 500 characters")
    if custom:
        return TestCommand("custom", custom, root)
    if _looks_python(root) or any(t.endswith(".py") for t in targets):
        py = find_python(root, python)
        kw = [f"-k{keyword}"] if keyword else []
        argv = [
            py,
            "-m",
            "pytest",
            "-p",
            PLUGIN_MODULE,
            *extra_args,
            *kw,
            *(["--", *targets] if targets else []),
        ]
        return TestCommand("pytest", argv, root)
    if (root / "package.json").exists():
        return TestCommand("npm", ["npm", "test", *extra_args], root)
    if (root / "Cargo.toml").exists():
        return TestCommand("cargo", ["cargo", "test", *extra_args], root)
    if (root / "go.mod").exists():
        go_targets = ["./" + t.removeprefix("./") for t in targets] or ["./..."]
        return TestCommand("go", ["go", "test", *extra_args, *go_targets], root)
    return TestCommand(
        "none", [], root, note="no test suite found (no pytest project, package.json, Cargo.toml or go.mod)"
    )


async def run_tests(
    cmd: TestCommand,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_output: Callable[[bytes], None] | None = None,
    timeout: float | None = 600.0,
    stop: asyncio.Event | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> TestRun:
    """Run the tests, feeding every plugin event into a TestRun (and `on_event`) as it arrives."""
    run = TestRun(runner=cmd.runner, command=cmd.display)
    if cmd.runner == "none":
        run.note = cmd.note
        run.finished = True
        return run
    env = {**os.environ, **cmd.env}
    pass_fds: list[int] = []
    read_fd = write_fd = -1
    transport: asyncio.ReadTransport | None = None
    decoder = EventDecoder()
    eof = asyncio.Event()

    listener = [on_event]

    def deliver(events: list[dict[str, Any]]) -> None:
        for ev in events:
            run.apply(ev)
            if listener[0] is not None:
                try:
                    listener[0](ev)
                except Exception:  # a broken consumer must not stop the run or the model's summary
                    log.exception("test event listener failed; it gets no further events")
                    listener[0] = None

    if cmd.runner == "pytest":
        try:
            folder = str(plugin_dir())
        except OSError as exc:  # a squatted or unsafe runtime folder: refuse rather than trust it
            run.note = f"tests not run: {exc}"
            run.finished = True
            return run
        env["PYTHONPATH"] = folder + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        read_fd, write_fd = os.pipe()
        pass_fds.append(write_fd)
        env["SLIPSTREAM_EVENTS_FD"] = str(write_fd)

        class _Events(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                deliver(decoder.feed(data))

            def eof_received(self) -> bool | None:
                deliver(decoder.close())
                eof.set()
                return None

            def connection_lost(self, exc: Exception | None) -> None:
                eof.set()

        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(_Events, os.fdopen(read_fd, "rb", buffering=0))

    def close_write_end() -> None:
        nonlocal write_fd
        if write_fd >= 0:
            os.close(write_fd)
            write_fd = -1

    try:
        res = await run_process(
            cmd.argv, cwd=cmd.cwd, env=env, timeout=timeout, max_output=max_output, on_output=on_output,
            stop=stop, pass_fds=pass_fds, after_start=close_write_end,
        )  # fmt: skip
    finally:
        close_write_end()
        if transport is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(eof.wait(), KILL_GRACE)
            transport.close()
    run.output_tail = res.output
    run.timed_out, run.cancelled = res.timed_out, res.cancelled
    if run.exit_status is None or res.exit_code not in (0, None):
        run.exit_status = res.exit_code
    if not run.duration:
        run.duration = res.duration
    if res.error:
        run.note = res.error
    elif res.timed_out:
        run.note = f"timed out after {timeout:g} s; the process group was killed; results so far are kept"
    elif res.cancelled:
        run.note = "stopped by the user; results so far are kept"
    elif cmd.runner == "pytest":
        if "No module named pytest" in res.output:
            run.note = (
                f"pytest is not installed in {cmd.argv[0]}; install it there or configure another interpreter"
            )
        elif not run.finished:
            why = res.status_line()
            run.note = (
                f"the test process ended abruptly ({why}) before pytest finished; results so far are kept"
            )
    if cmd.runner != "pytest" or not run.started:
        run.parsed_summary = parse_summary_line(res.output.splitlines())
        if run.parsed_summary is not None and cmd.runner != "pytest":
            for k, v in run.parsed_summary.items():
                if k in run.counts:
                    run.counts[k] = v
        run.finished = run.finished or not (res.timed_out or res.cancelled)
    return run
