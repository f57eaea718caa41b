"""`slipstream apply-patch [--root DIR]`: apply a patch read from stdin with the tools' own code.

Same path as the app: parse and plan (app.tools.patch), then ProjectFS.apply (confined, atomic,
checkpointed so the GUI's undo can take it back). Prints one line per changed file; on any error
prints it to stderr, writes nothing and exits 1 (see --help for every status).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from app.adapters.project_fs import ProjectFS
from app.cli.common import (
    FAILED,
    INTERRUPTED,
    OK,
    PIPE_CLOSED,
    USAGE,
    CliError,
    Parser,
    parse,
    read_stdin_text,
    silence_stdout,
)
from app.tools.fileops import ToolContext, execute
from app.tools.patch import PatchError
from app.tools.paths import PathRefused


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    ap = Parser(
        prog="slipstream apply-patch",
        description="Apply a patch read from stdin (UTF-8).",
        epilog="Exit status: 0 applied; 1 the patch does not apply (nothing written); 2 bad options, "
        "--root is not a folder, or stdin is not UTF-8; 130 Ctrl-C.",
    )
    ap.add_argument("--root", default=".", help="project root (default: the current folder)")
    args = parse(ap, argv)
    if isinstance(args, int):
        return args
    root = Path(args.root).expanduser()
    if not root.is_dir():
        return _fail(f"{root} is not a folder", USAGE)
    try:
        fs = ProjectFS(root)
    except OSError as exc:
        return _fail(str(exc), USAGE)
    try:
        text = read_stdin_text()
    except CliError as exc:
        return _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)
    result = execute("apply_patch", {"patch": text}, ToolContext(fs))
    if not result.ok:
        return _fail(result.output_text.removeprefix("error: "), FAILED)
    cs = result.change_set
    if cs is None:
        print("error: the patch planned no change", file=sys.stderr)
        return 1
    try:
        applied = fs.apply(cs, turn=0, now=time.time())
    except (PatchError, PathRefused, OSError) as exc:
        return _fail(f"nothing was applied: {exc}", FAILED)
    try:
        print(cs.summary())
        if applied.checkpoint is not None:
            print(f"checkpoint {applied.checkpoint.id} (undo from the app)")
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return PIPE_CLOSED
    return OK


def _fail(message: str, status: int) -> int:
    print(f"slipstream apply-patch: {message}", file=sys.stderr)
    return status
