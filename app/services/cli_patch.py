"""`slipstream apply-patch [--root DIR]`: apply a patch read from stdin with the tools' own code.

Same path as the app: parse and plan (app.tools.patch), then ProjectFS.apply (confined, atomic,
checkpointed so the GUI's undo can take it back). Prints one line per changed file; on any error
prints it to stderr, writes nothing and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from app.adapters.project_fs import ProjectFS
from app.tools.fileops import ToolContext, execute
from app.tools.patch import PatchError
from app.tools.paths import PathRefused


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="slipstream apply-patch", description="Apply a patch read from stdin.")
    ap.add_argument("--root", default=".", help="project root (default: the current folder)")
    args = ap.parse_args(argv)
    try:
        fs = ProjectFS(args.root)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = sys.stdin.read()
    result = execute("apply_patch", {"patch": text}, ToolContext(fs))
    if not result.ok:
        print(result.output_text, file=sys.stderr)
        return 1
    cs = result.change_set
    if cs is None:
        print("error: the patch planned no change", file=sys.stderr)
        return 1
    try:
        applied = fs.apply(cs, turn=0, now=time.time())
    except (PatchError, PathRefused, OSError) as exc:
        print(f"error: nothing was applied: {exc}", file=sys.stderr)
        return 1
    print(cs.summary())
    if applied.checkpoint is not None:
        print(f"checkpoint {applied.checkpoint.id} (undo from the app)")
    return 0
