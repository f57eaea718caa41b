"""`slipstream test [PATH] [--json]`: run the project's tests headless and print the events live.

PATH is the project folder (default: the current folder) or a test file/folder inside a Python
project, then run as a pytest target. Without --json, one line per finished test and the digest
the model would receive (app.tools.digest, at the agent's default budget); with --json, one JSON
object per event (runner output as "output" events), then a "summary" object with the counts and
that digest as "text". Exit status: 0 green, 1 failures, 2 could not run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.adapters.proc import detect_test_command, run_tests
from app.cli.common import FAILED, OK, USAGE, CliError, Command, Parser, number_at_least, parse, run_command
from app.protocol.tokens import estimate_tokens
from app.tools.digest import build_digest
from app.tools.testrun import TestRun

_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", ".git")


def _root_and_targets(path: Path) -> tuple[Path, list[str]]:
    path = path.resolve()
    if path.is_dir() and any((path / m).exists() for m in _MARKERS):
        return path, []
    start = path if path.is_dir() else path.parent
    for d in (start, *start.parents):
        if any((d / m).exists() for m in _MARKERS):
            return d, [str(path.relative_to(d))]
    return (path, []) if path.is_dir() else (path.parent, [path.name])


def _parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="slipstream test",
        description="Run the project's tests headless.",
        epilog="Exit status: 0 green; 1 failures; 2 could not run, or bad options or PATH; 130 Ctrl-C; "
        "143 SIGTERM; 141 stdout closed by its reader (the tests are stopped).",
    )
    ap.add_argument("path", nargs="?", default=".", help="project folder, or a test file/folder in it")
    ap.add_argument("--json", action="store_true", help="one JSON object per event")
    ap.add_argument("--python", help="interpreter for pytest (default: the project's .venv, else this one)")
    ap.add_argument("--command", help="custom test command (run through the shell)")
    ap.add_argument(
        "--timeout",
        type=number_at_least(0, above=True),
        default=600.0,
        help="seconds before the run is killed (default 600)",
    )
    ap.add_argument("-k", dest="keyword", help="pytest -k expression")
    return ap


async def _test(cmd: Command, args: argparse.Namespace) -> int:
    target = Path(args.path).expanduser()
    if not target.exists():
        raise CliError(f"no such file or folder: {target}", USAGE)
    root, targets = _root_and_targets(target)
    extra = ["-k", args.keyword] if args.keyword else []
    command = detect_test_command(
        root, targets=targets, python=args.python, custom=args.command, extra_args=extra
    )
    out = cmd.out

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def on_event(ev: dict[str, Any]) -> None:
        if args.json:
            emit(ev)
        elif (ev.get("kind") == "phase" and ev.get("category") and ev.get("category") != "passed") or (
            ev.get("kind") == "phase" and ev.get("when") == "call" and ev.get("category") == "passed"
        ):
            out.write(
                f"{str(ev['category']).upper():8} {ev.get('nodeid', '')} ({float(ev.get('duration', 0)):.2f}s)\n"
            )
        elif ev.get("kind") == "collected" and not args.json:
            out.write(f"collected {ev.get('count', 0)} tests\n")

    def on_output(chunk: bytes) -> None:
        if args.json:
            emit({"kind": "output", "text": chunk.decode("utf-8", "replace")})
        else:
            out.write_bytes(chunk)

    run: TestRun = await run_tests(
        command,
        on_event=on_event,
        on_output=None if command.runner == "pytest" else on_output,
        timeout=args.timeout,
    )
    text = build_digest(run, estimate=estimate_tokens, root=root.as_posix()).text
    if args.json:
        emit(
            {
                "kind": "summary",
                "runner": run.runner,
                "command": run.command,
                "ok": run.ok,
                "counts": {k: v for k, v in run.counts.items() if v},
                "exit_status": run.exit_status,
                "timed_out": run.timed_out,
                "note": run.note,
                "text": text,
            }
        )
    else:
        out.write("\n" + text + "\n")
    if command.runner == "none" or (run.exit_status is None and not run.cases):
        return USAGE
    return OK if run.ok else FAILED


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    return run_command("test", lambda cmd: _test(cmd, args))
