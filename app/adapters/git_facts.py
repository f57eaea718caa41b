"""Facts from git for ranking the first context: the files of the last commits.

Git is never required: no git, no repository, a slow or failing `git log` all give no facts. Runs
`git log --name-only` (read-only, no optional locks) with a short timeout; call it off the GUI thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["committed_paths", "recent_commits"]

GIT_TIMEOUT_S = 3.0


def committed_paths(log_text: str) -> tuple[str, ...]:
    """The paths of `git log --name-only --pretty=format:` output, most recent first, each once."""
    seen: dict[str, None] = {}
    for line in log_text.splitlines():
        path = line.strip()
        if path and path not in seen:
            seen[path] = None
    return tuple(seen)


def recent_commits(root: Path, commits: int = 50, *, timeout_s: float = GIT_TIMEOUT_S) -> tuple[str, ...]:
    """Files changed by the last `commits` commits under `root` (relative to it), newest first; () when
    git is missing, `root` is not in a repository, or git fails."""
    git = shutil.which("git")
    if git is None:
        return ()
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            [
                git,
                "--no-pager",
                # a repository's own config must not run anything: no signature program, no fsmonitor
                "-c",
                "log.showSignature=false",
                "-c",
                "core.fsmonitor=false",
                "-C",
                str(root),
                "log",
                "--no-show-signature",
                "--no-ext-diff",
                "--name-only",
                "--relative",
                "--no-renames",
                "--pretty=format:",
                "-n",
                str(commits),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    return committed_paths(done.stdout.decode("utf-8", errors="replace"))
