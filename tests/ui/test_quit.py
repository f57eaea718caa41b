"""Quitting the real app, as a process: every route exits 0, prints no traceback, and leaves nothing.

Each run has a profile folder of its own (SLIPSTREAM_PROFILE_DIR), which every process the app starts
inherits; "nothing left" is checked on the whole process table by that marker, so it also covers a
child that was re-parented. Close times are printed as figures (`pytest -s`); the only time assertion
is a generous hang guard.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from app.profile import PROFILE_ENV

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 10.0  # a quit that takes this long counts as hung (the target is under 2 s)
CLOSES = 20

pytestmark = pytest.mark.slow


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    quit_s: float  # from the "ready" line (services up) to the process's exit
    children_at_ready: list[int]
    commands_at_ready: list[str]  # their command lines (e.g. a `git` the app ran for its facts)
    ports_at_ready: list[int]  # TCP ports the process itself listened on (the in-process scripted server)


def _listening(pid: int) -> list[int]:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return []
    return sorted({c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN})


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _with_profile(pid_profile: Path) -> list[psutil.Process]:
    """Every live process (not a zombie) whose environment names this profile folder."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(PROFILE_ENV) == str(pid_profile):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _env(profile: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update({PROFILE_ENV: str(profile), "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """stdout (or stderr) up to and including the line holding `marker`; b"" if the process ended."""
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    seen = b""
    end = time.monotonic() + timeout
    try:
        while marker not in seen and time.monotonic() < end:
            for key, _ in sel.select(max(end - time.monotonic(), 0.01)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    if not sel.get_map():
                        return seen
                seen += chunk
    finally:
        sel.close()
    return seen


def run_app(
    project: Path,
    profile: Path,
    *,
    route: str,
    args: list[str] | None = None,
    send: signal.Signals | None = None,
    ready: bytes = b"lifecycle: ready",
    env_extra: dict[str, str] | None = None,
) -> Run:
    """Start `slipstream` (or a subcommand via `args`), wait until it is ready, quit it by `route`
    (the app's own probe) or by `send`-ing a signal, and return how it ended."""
    env = _env(profile, SLIPSTREAM_LIFECYCLE_PROBE=route, **(env_extra or {}))
    cmd = [sys.executable, "-m", "app", *(args or [str(project)])]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        head = _read_until(proc, ready, 60)
        assert ready in head, head.decode(errors="replace")
        t0 = time.monotonic()
        kids = [p for p in _with_profile(profile) if p.pid != proc.pid]
        children = [p.pid for p in kids]
        commands = [" ".join(_cmdline(p)) for p in kids]
        ports = _listening(proc.pid)
        if send is not None:
            proc.send_signal(send)
        out, err = proc.communicate(timeout=HANG_GUARD_S + 20)
        quit_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = head.decode(errors="replace")
    return Run(
        proc.returncode,
        text + out.decode(errors="replace"),
        text + err.decode(errors="replace"),
        quit_s,
        children,
        commands,
        ports,
    )


def assert_clean(run: Run, profile: Path) -> None:
    assert run.rc == 0, run.stderr
    assert "Traceback" not in run.stderr and "RuntimeError" not in run.stderr, run.stderr
    assert run.quit_s < HANG_GUARD_S, f"quit took {run.quit_s:.1f} s"
    end = time.monotonic() + 2.0  # a killed child may need a moment to be reaped by init
    while (left := _with_profile(profile)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not left, [" ".join(p.cmdline()) for p in left]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "main.py").write_text("print('hello')\n", encoding="utf-8")
    return root


def _close_many(project: Path, tmp_path: Path, n: int, label: str, **kw: str) -> list[float]:
    times = []
    for i in range(n):
        profile = tmp_path / f"profile-{label}-{i}"
        run = run_app(project, profile, route="close", env_extra=kw)
        assert_clean(run, profile)
        times.append(run.quit_s)
    print(
        f"\nclosing the window ({label}), {n} runs: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s (ready line -> process exit)"
    )
    return times


def test_closing_the_window_twenty_times_offscreen(project: Path, tmp_path: Path) -> None:
    """The real window (offscreen), closed 20 times: exit 0, no traceback, nothing left running."""
    times = _close_many(project, tmp_path, CLOSES, "offscreen")  # each run checked by assert_clean
    assert len(times) == CLOSES and max(times) < HANG_GUARD_S


@pytest.fixture
def xvfb_display(tmp_path: Path) -> Iterator[str]:
    """A private Xvfb server for the test (`make test` installs xvfb); skipped where there is none."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (make test installs it; apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as f:
            number = f.readline().strip().decode()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_closing_the_window_twenty_times_under_xvfb(project: Path, tmp_path: Path, xvfb_display: str) -> None:
    """The same on a real X server (xcb platform): the window manager's close path, 20 times."""
    times = _close_many(project, tmp_path, CLOSES, "Xvfb", DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb")
    assert len(times) == CLOSES and max(times) < HANG_GUARD_S


@pytest.mark.parametrize("route", ["ctrl-q", "app-quit"])
def test_other_quit_routes(project: Path, tmp_path: Path, route: str) -> None:
    """Ctrl+Q (the Quit action) and QApplication.quit() (what a session end does) quit cleanly too."""
    profile = tmp_path / "profile"
    assert_clean(run_app(project, profile, route=route), profile)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_to_the_app_leave_nothing(project: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM/SIGINT/SIGHUP: exit 0, nothing left. The app serves its scripted engine on a thread of
    its own (app.server.inprocess), not by a child: its port is closed once the app is gone."""
    profile = tmp_path / "profile"
    run = run_app(project, profile, route="ready", send=sig)
    assert not [c for c in run.commands_at_ready if " serve" in c], "the desktop app started a child server"
    assert run.ports_at_ready, "the app served no scripted engine: the test would prove nothing"
    assert_clean(run, profile)
    assert not any(_accepts(port) for port in run.ports_at_ready)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_to_watch_leave_no_child(project: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """`slipstream watch`: SIGTERM/SIGINT is how it normally stops: exit 0, its server child gone."""
    profile = tmp_path / "profile"
    run = run_app(
        project, profile, route="", args=["watch", str(project)], send=sig, ready=b"[info] watching"
    )
    assert run.children_at_ready, "watch had no child server to stop: the test would prove nothing"
    assert_clean(run, profile)


def test_killing_the_app_outright_leaves_nothing(project: Path, tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the in-process server ends with the process."""
    profile = tmp_path / "profile"
    run = run_app(project, profile, route="ready", send=signal.SIGKILL)
    assert run.ports_at_ready and not [c for c in run.commands_at_ready if " serve" in c]
    assert run.rc == -signal.SIGKILL
    end = time.monotonic() + 5.0  # a command the app had started may still be finishing
    while (left := _with_profile(profile)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not left, [" ".join(p.cmdline()) for p in left]
    assert not any(_accepts(port) for port in run.ports_at_ready)


def test_killing_watch_outright_takes_its_child_along(project: Path, tmp_path: Path) -> None:
    """SIGKILL to `slipstream watch`: the child's parent-death signal (Linux) ends it anyway."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    profile = tmp_path / "profile"
    run = run_app(
        project,
        profile,
        route="",
        args=["watch", str(project)],
        send=signal.SIGKILL,
        ready=b"[info] watching",
    )
    assert run.children_at_ready
    assert run.rc == -signal.SIGKILL
    end = time.monotonic() + 5.0
    while (left := _with_profile(profile)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not left, [" ".join(p.cmdline()) for p in left]


def test_the_token_is_not_on_any_command_line(project: Path, tmp_path: Path) -> None:
    """The child server's token travels in its environment: no process shows it in its arguments."""
    profile = tmp_path / "profile"
    env = _env(profile, SLIPSTREAM_LIFECYCLE_PROBE="ready")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "watch", str(project)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert b"[info] watching" in _read_until(proc, b"[info] watching", 60)
        (child,) = [p for p in _with_profile(profile) if p.pid != proc.pid]
        token = child.environ()["SLIPSTREAM_SERVE_TOKEN"]
        assert len(token) >= 20
        assert not any(token in arg for p in psutil.process_iter() for arg in _cmdline(p))
        assert not any(arg.startswith("--token") for arg in child.cmdline())
    finally:
        proc.terminate()
        proc.communicate(timeout=HANG_GUARD_S + 20)


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def test_no_display_is_one_line_and_status_2(project: Path, tmp_path: Path) -> None:
    """No $DISPLAY/$WAYLAND_DISPLAY and no platform chosen: one line saying so, status 2, no Qt abort."""
    env = _env(tmp_path / "profile")
    del env["QT_QPA_PLATFORM"]
    proc = subprocess.run(
        [sys.executable, "-m", "app", str(project)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no display" in proc.stderr and proc.stdout == ""


def test_smoke_without_a_display_runs_offscreen_in_a_throwaway_profile(project: Path, tmp_path: Path) -> None:
    """--smoke with no display falls back to offscreen; it uses a profile of its own, not the user's."""
    home = tmp_path / "home"
    env = _env(tmp_path / "unused")
    for key in ("QT_QPA_PLATFORM", PROFILE_ENV):
        del env[key]
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "app", str(project), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("smoke: ok")
    assert "Traceback" not in proc.stderr
    leftovers = [p for p in home.rglob("*")] if home.exists() else []
    assert leftovers == [], leftovers  # no settings, no history: the user's folders stay untouched
