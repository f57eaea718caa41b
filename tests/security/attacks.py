"""Replays of the hostile-repository and hostile-model attacks, shared by tests/security and `make soak`.

Each function builds its own tree under `base`, replays one family of attacks through the real
code (ProjectFS, the tools, the ledger, the agent's argument handling) and returns counts: attempts,
and how many got through. The tests assert the counts; `make soak` prints them in its table.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from app.adapters.fs_read import TMP_SUFFIX
from app.adapters.project_fs import ProjectFS
from app.context.coalesce import Batch
from app.context.ledger import Ledger
from app.tools.fileops import ToolContext, execute
from app.tools.patch import PatchError

ROOT = Path(__file__).resolve().parents[2]
GIT_MARK, ENV_MARK, HOOK_MARK = "GITCONFIG-MARK-41", "ENV-MARK-77", "HOOK-MARK-93"


@dataclass
class Report:
    attempts: int = 0
    escapes: list[str] = field(default_factory=list)


def _fs(project: Path, **kw: Any) -> ProjectFS:
    return ProjectFS(project, state_dir=project.parent / f"{project.name}-state", **kw)


def _digest(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---- symlinks, case folding, Windows spellings -------------------------------------------------


def hostile_tree(project: Path) -> None:
    """A cloned repository that commits links into .git and onto .env."""
    (project / ".git" / "hooks").mkdir(parents=True)
    (project / ".git" / "config").write_text(f"[core]\n\t# {GIT_MARK}\n")
    hook = project / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\n# {HOOK_MARK}\n")
    hook.chmod(0o755)
    (project / ".env").write_text(f"API_TOKEN={ENV_MARK}\n")
    (project / "docs").mkdir()
    (project / "README.md").write_text("# readme\n")
    (project / "docs" / "notes.cfg").symlink_to(Path("..") / ".git" / "config")
    (project / "g").symlink_to(".git", target_is_directory=True)
    (project / "notes.txt").symlink_to(".env")
    (project / "hook.sh").symlink_to(Path(".git") / "hooks" / "post-commit")
    (project / "docs" / "cfgdir").symlink_to(Path("..") / ".git", target_is_directory=True)
    (project / ".slipstreamignore").write_text(
        "!.env\n!.git/\n!*.pem\n"
    )  # a repo's own opt-in: must not work


READ_PATHS = [
    "docs/notes.cfg",
    "g/config",
    "notes.txt",
    "hook.sh",
    ".git/config",
    ".Git/config",
    ".GIT/config",
    ".ENV",
    ".git./config",
    ".git /config",
    "GIT~1/config",
    ".env:x",
    ".env.",
    ".env ",
    "g/hooks/post-commit",
    "docs/cfgdir/config",
    "docs/../.git/config",
    "./.git/config",
    ".git\\config",
    ".git//config",
]


def _patches() -> Iterator[str]:
    def p(*lines: str) -> str:
        return "\n".join(["*** Begin Patch", *lines, "*** End Patch"])

    yield p("*** Update File: docs/notes.cfg", "@@", f" \t# {GIT_MARK}", "+\tfsmonitor = touch /tmp/pwned")
    yield p("*** Add File: g/hooks/post-checkout", "+#!/bin/sh", "+touch /tmp/pwned")
    yield p("*** Update File: hook.sh", "@@", f" # {HOOK_MARK}", "+touch /tmp/pwned")
    yield p("*** Update File: notes.txt", "@@", f"-API_TOKEN={ENV_MARK}", "+API_TOKEN=x")
    yield p("*** Update File: .Git/config", "@@", f" \t# {GIT_MARK}", "+x")
    yield p("*** Add File: .GIT/hooks/pre-push", "+x")
    yield p("*** Add File: .git./hooks/pre-push", "+x")
    yield p("*** Add File: .git /hooks/pre-push", "+x")
    yield p("*** Add File: GIT~1/hooks/pre-push", "+x")
    yield p("*** Add File: .git::$INDEX_ALLOCATION/hooks/x", "+x")
    yield p("*** Delete File: .env")
    yield p("*** Delete File: notes.txt")
    yield p(
        "*** Update File: README.md", "*** Move to: .git/hooks/pre-commit", "@@", "-# readme", "+touch /tmp/x"
    )
    yield p(
        "*** Update File: README.md", "*** Move to: g/hooks/pre-commit", "@@", "-# readme", "+touch /tmp/x"
    )
    yield p("*** Add File: docs/cfgdir/hooks/x", "+x")
    yield p("*** Update File: docs/cfgdir/config", "@@", f" \t# {GIT_MARK}", "+x")


class _Folding(TypedDict, total=False):
    case_insensitive: bool
    windows_names: bool


def symlink_and_casefold_attacks(base: Path, make_fs: Callable[..., ProjectFS] | None = None) -> Report:
    """Reads, listings, searches and patches aimed at .git and .env through links and spellings, on
    the real (case-sensitive) disk and with case folding and Windows names forced on."""
    report = Report()
    variants: tuple[_Folding, ...] = ({}, {"case_insensitive": True, "windows_names": True})
    for n, opts in enumerate(variants):
        project = base / f"repo{n}"
        project.mkdir(parents=True)
        hostile_tree(project)
        fs = (make_fs or ProjectFS)(project, state_dir=project.parent / f"{project.name}-state", **opts)
        ctx = ToolContext(fs, redact=fs.redact)
        guarded = project / ".git"
        before = _digest(guarded) | {".env": hashlib.sha256((project / ".env").read_bytes()).hexdigest()}
        mode = (guarded / "hooks" / "post-commit").stat().st_mode

        def attempt(
            label: str,
            name: str,
            args: dict[str, Any],
            ctx: ToolContext = ctx,
            fs: ProjectFS = fs,
            project: Path = project,
            before: dict[str, str] = before,
            opts: _Folding = opts,
        ) -> None:
            report.attempts += 1
            result = execute(name, args, ctx)
            if any(m in result.output_text for m in (GIT_MARK, ENV_MARK, HOOK_MARK)):
                report.escapes.append(f"{opts} {label}: {name} showed protected content")
            cs = result.change_set
            if cs is not None:
                try:
                    fs.apply(cs)
                except (PatchError, ValueError, OSError):
                    pass
            after = _digest(project / ".git") | {
                ".env": hashlib.sha256((project / ".env").read_bytes()).hexdigest()
                if (project / ".env").exists()
                else "gone"
            }
            if after != before:
                report.escapes.append(f"{opts} {label}: {name} changed .git or .env")
                before.clear()
                before.update(after)

        for path in READ_PATHS:
            attempt(repr(path), "read_file", {"path": path})
            attempt(repr(path), "search", {"query": "MARK", "path": path})
        for path in ("", "g", ".git", ".GIT", "docs", "docs/cfgdir"):
            attempt(repr(path), "list_files", {"path": path, "max_entries": 5000})
            attempt(repr(path), "search", {"query": "MARK", "path": path})
        for i, patch in enumerate(_patches()):
            attempt(f"patch {i}", "apply_patch", {"patch": patch})
        if (guarded / "hooks" / "post-commit").stat().st_mode != mode:
            report.escapes.append(f"{opts} the hook's mode changed")
        # the context side: the snapshot and the index never carry .git or .env content
        ledger = Ledger()
        ledger.observe_many(fs.scan_tree())
        snap = ledger.build_snapshot(100_000, 0.0, contents=fs.read_many(ledger.snapshot_candidates(100_000)))
        report.attempts += 1
        if any(m in snap.text for m in (GIT_MARK, ENV_MARK, HOOK_MARK)):
            report.escapes.append(f"{opts} the snapshot carried protected content")
    return report


# ---- secrets -----------------------------------------------------------------------------------

# (kind, file, line): each value is fake but shaped like the real thing.
SECRETS: list[tuple[str, str, str]] = [
    ("AWS access key", "config/aws.ini", "aws_access_key_id = AKIAQ3EGRT5YWZ7XK2PA"),
    ("AWS secret key", "config/aws.ini", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLQKE9"),
    ("GitHub token", "ci.yml", "  token: ghp_Q8w7E6r5T4y3U2i1O0pLkJhGfDsAzXcVbN12"),
    (
        "GitHub fine-grained",
        "ci.yml",
        "  gh_pat: github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM",
    ),
    ("GitLab token", "ci.yml", "GITLAB=glpat-x8Yb3Kq9Lm2Np5Rs7Tv1"),
    ("OpenAI key", "app/settings.py", 'OPENAI = "sk-proj-Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2Yg1Uf0IdPoSaLkJh"'),
    ("Anthropic key", "app/settings.py", 'ANTH = "sk-ant-api03-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkLzXcVbNm1234"'),
    ("xAI key", "app/settings.py", 'XAI = "xai-Rk3Jd9Lq2Wm8Zp4Tn6Vb1Xc7Hs5Fg0Aa"'),
    ("Hugging Face token", ".envrc.sample", "HF=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"),
    ("npm token", ".npm-token.txt", "npm_Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78"),
    (
        "npm authToken",
        "web/npmrc.txt",
        "//registry.npmjs.org/:_authToken=npm_Zz12Yy34Xx56Ww78Vv90Uu12Tt34Ss56Rr78",
    ),
    (
        "SendGrid key",
        "mail.py",
        'KEY = "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"',
    ),
    ("Slack token", "bot.py", 'SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"'),
    (
        "Slack webhook",
        "bot.py",
        'HOOK = "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/AbCdEfGhIjKlMnOpQrStUvWx"',
    ),
    ("Stripe key", "pay.py", 'STRIPE = "sk_live_51HxQ2kL9mN3pQ5rS7tV9wX1yZ"'),
    ("Google API key", "maps.js", 'const key = "AIzaSyD4x7Q9w2E5r8T1y3U6i9O2p5A8s1D4f7G";'),
    (
        "Azure storage key",
        "azure.cfg",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
        + "Qm9vbXZhbHVlc2VjcmV0" * 4
        + "Q2xvdWQ=;",
    ),
    ("Azure client secret", "azure.yaml", "client_secret: Xy7Q~aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456"),
    (
        "Azure SAS",
        "azure.yaml",
        "url: https://acct.blob.core.windows.net/c?sv=2022&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789%2Bab",
    ),
    (
        "JWT",
        "api.http",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("Postgres URL", "docker-compose.yml", "  DATABASE_URL: postgres://app:Pa55w0rdQz@db:5432/app"),
    ("MySQL URL", "settings.toml", 'db = "mysql://root:S3cr3tR00t!@127.0.0.1/prod"'),
    ("Mongo URL", "settings.toml", 'mongo = "mongodb+srv://svc:Xk29fLq81@cluster0.mongo.net/db"'),
    ("Redis URL", "settings.toml", 'cache = "redis://:Rz81Kq02Lm@cache:6379/0"'),
    ("unquoted YAML password", "deploy/values.yaml", "  password: Tr0ub4dor-and-3"),
    ("unquoted env password", "deploy/app.env.sample", "DB_PASSWORD=hunter2-Zq9"),
    ("env secret key", "deploy/app.env.sample", "DJANGO_SECRET_KEY=q9$Lk2#Zp8@Wm4!Xv7"),
    ("kubeconfig token", "kube/config.yaml", "    token: kX9vB2nM4qW7eR1tY5uI8oP3aS6dF0gH2jK4lZ7xC9v"),
    (
        "kubeconfig key data",
        "kube/config.yaml",
        "    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVB",
    ),
    (
        "PyPI token",
        "publish.cfg",
        "password = pypi-AgEIcHlwaS5vcmcCJDAxMjM0NTY3LTg5YWItY2RlZi0wMTIzLTQ1Njc4OWFiY2RlZgACKlszLCJm",
    ),
    ("Twilio key", "sms.py", 'TWILIO = "SK0123456789abcdef0123456789abcdef"'),
    (
        "Discord bot token",
        "bot.py",
        'DISCORD = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.MnOpQrStUvWxYz0123456789AbCdEfGhIjKl"',
    ),
    ("Telegram bot token", "bot.py", 'TG = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"'),
    (
        "private key",
        "keys/deploy_key.txt",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAuK3c8Zx2Q\nvT9x5Lq2Zk==\n-----END RSA PRIVATE KEY-----",
    ),
    ("client secret assignment", "oauth.json", '  "client_secret": "Gh8Kq2Lz9Xv4Nm7Pw3Rt"'),
    (
        "Artifactory key",
        "ci/art.txt",
        "ARTIFACTORY=AKCp8jQ7ZxVb5Nm2Lk9Hg4Fd1Sa6Qw3Er8Ty5Ui2Op7As4Df1Gh9Jk6Lz3Xc0Vb5Nm",
    ),
]


def _fingerprint(line: str) -> str:
    """A distinctive middle slice of the secret value: its presence anywhere means it went out."""
    value = line.split("=", 1)[-1] if "=" in line and "://" not in line else line
    value = value.split(":", 1)[-1] if "://" not in value else value.split("://", 1)[1].split("@")[0]
    value = value.strip().strip("\"';,")
    if "BEGIN RSA" in line:
        return "uK3c8Zx2Q"
    mid = len(value) // 2
    return value[max(0, mid - 6) : mid + 6]


@dataclass
class SecretsReport:
    kinds: int = 0
    out: list[str] = field(default_factory=list)  # "<where>: <kind>"


def secrets_corpus(base: Path) -> SecretsReport:
    """Every secret kind through the snapshot, an update, read_file, search and a link to .env."""
    project = base / "secrets"
    project.mkdir(parents=True)
    by_file: dict[str, list[str]] = {}
    for _kind, path, line in SECRETS:
        by_file.setdefault(path, []).append(line)
    for path, lines in by_file.items():
        f = project / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("# config\n" + "\n".join(lines) + "\nplain = 1\n")
    (project / ".env").write_text("REAL_SECRET=EnvOnlyValue_Zq81\n")
    (project / "env_link.txt").symlink_to(".env")
    (project / ".slipstreamignore").write_text("!.env\n!env_link.txt\n")
    fs = _fs(project)
    ctx = ToolContext(fs, redact=fs.redact)
    report = SecretsReport(kinds=len({k for k, _, _ in SECRETS}))
    prints = [(k, _fingerprint(line)) for k, _, line in SECRETS] + [
        (".env through a link", "EnvOnlyValue_Zq81")
    ]

    def check(where: str, text: str, query: str = "") -> None:
        if query:
            text = text.replace(repr(query), "")  # "no matches for '<query>'" echoes what the model sent
        for kind, fp in prints:
            if fp and fp in text:
                report.out.append(f"{where}: {kind}")

    ledger = Ledger()
    ledger.observe_many(fs.scan_tree())
    snap = ledger.build_snapshot(200_000, 0.0, contents=fs.read_many(ledger.snapshot_candidates(200_000)))
    check("snapshot", snap.text)
    ledger.mark_sent(snap.id, "c")
    ledger.acknowledge(snap.id)
    for path, lines in by_file.items():  # each secret added again as a new line: the update path
        with open(project / path, "a") as fh:
            fh.write("\n".join(lines) + "\n")
    batch = Batch(frozenset(by_file), frozenset(), (), len(by_file), 0.0, 0.1)
    ledger.observe_many(fs.read_batch(batch, ledger.known_paths).versions)
    update = ledger.build_update(200_000)
    check("update", update.text if update is not None else "")
    for path in [*by_file, ".env", "env_link.txt"]:
        check(f"read_file {path}", execute("read_file", {"path": path}, ctx).output_text)
    for _kind, _path, line in SECRETS:
        fp = _fingerprint(line)
        check(f"search {fp!r}", execute("search", {"query": fp}, ctx).output_text, fp)
    check("search .env value", execute("search", {"query": "EnvOnlyValue"}, ctx).output_text, "EnvOnlyValue")
    return report


# ---- parallel applies and crashes --------------------------------------------------------------


@dataclass
class ApplyReport:
    applies: int = 0
    reported_failed: int = 0
    wrong_content: int = 0
    duplicate_ids: int = 0
    lost_checkpoints: int = 0
    index_errors: int = 0
    temp_files: int = 0
    half_applied: int = 0
    interrupted: int = 0  # kills that landed between the first and the last file
    notes: list[str] = field(default_factory=list)


def _shared(workers: int, r: int) -> str:
    """One line per worker, far enough apart that concurrent edits merge cleanly."""
    return "".join(
        f"line {w}{f' r{r}' if r else ''}\n" + "".join(f"pad {w}.{k}\n" for k in range(4))
        for w in range(workers)
    )


def parallel_applies(base: Path, workers: int = 6, rounds: int = 20) -> ApplyReport:
    """`workers` threads, each with its own ProjectFS on one project, apply patches at once, `rounds`
    times; then everything is undone. Counts failures, wrong files, repeated ids and lost undo."""
    project = base / "parallel"
    project.mkdir(parents=True)
    for w in range(workers):
        (project / f"f{w}.txt").write_text("v0\n")
    (project / "shared.txt").write_text(_shared(workers, 0))
    state = base / "parallel-state"
    report = ApplyReport()
    lock = threading.Lock()

    def worker(w: int) -> None:
        fs = ProjectFS(project, state_dir=state)
        for r in range(rounds):
            patch = (
                f"*** Begin Patch\n*** Update File: f{w}.txt\n@@\n-v{r}\n+v{r + 1}\n"
                f"*** Update File: shared.txt\n@@\n-line {w}{'' if r == 0 else f' r{r}'}\n+line {w} r{r + 1}\n"
                "*** End Patch"
            )
            res = execute("apply_patch", {"patch": patch}, ToolContext(fs))
            ok = False
            if res.ok:
                assert res.change_set is not None
                try:
                    fs.apply(res.change_set, turn=r)
                    ok = True
                except PatchError as exc:
                    with lock:
                        report.notes.append(str(exc)[:120])
            else:
                with lock:
                    report.notes.append(res.output_text[:120])
            with lock:
                report.applies += 1
                report.reported_failed += not ok

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in range(workers):
        report.wrong_content += (project / f"f{w}.txt").read_text() != f"v{rounds}\n"
    shared = (project / "shared.txt").read_text()
    report.wrong_content += shared != _shared(workers, rounds)
    fs = ProjectFS(project, state_dir=state)
    try:
        cps = fs.checkpoints.all()
    except OSError:
        report.index_errors += 1
        return report
    ids = [c.id for c in cps]
    report.duplicate_ids = len(ids) - len(set(ids))
    report.lost_checkpoints = (report.applies - report.reported_failed) - len(fs.checkpoints.active())
    while fs.checkpoints.active():
        fs.undo()
    report.wrong_content += any((project / f"f{w}.txt").read_text() != "v0\n" for w in range(workers))
    report.wrong_content += (project / "shared.txt").read_text() != _shared(workers, 0)
    report.temp_files = sum(1 for p in project.iterdir() if p.name.endswith(TMP_SUFFIX))
    return report


_CRASH_CHILD = r"""
import sys, time
from pathlib import Path
from app.adapters.project_fs import ProjectFS
from app.tools.fileops import ToolContext, execute
project, state, files = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
fs = ProjectFS(project, state_dir=state)
orig = fs._write_one
def slow(t, data):
    orig(t, data)
    time.sleep(0.004)
fs._write_one = slow
patch = "*** Begin Patch\n" + "".join(
    f"*** Update File: m{i}.txt\n@@\n-old {i}\n+new {i}\n" for i in range(files)) + "*** End Patch"
res = execute("apply_patch", {"patch": patch}, ToolContext(fs))
print("ready", flush=True)
fs.apply(res.change_set)
print("applied", flush=True)
"""


def kill_mid_apply(base: Path, runs: int = 10, files: int = 30, seed: int = 1) -> ApplyReport:
    """A child process applies a `files`-file change set and is killed -9 at a varying moment; a fresh
    ProjectFS then recovers. Every run must end all-old (no checkpoint) or all-new (one checkpoint)."""
    import random

    rnd = random.Random(seed)
    report = ApplyReport()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(project: Path, state: Path) -> subprocess.Popen[bytes]:
        project.mkdir(parents=True)
        for i in range(files):
            (project / f"m{i}.txt").write_text(f"old {i}\n")
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(project), str(state), str(files)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert child.stdout is not None
        child.stdout.readline()  # "ready": planned, about to apply
        return child

    # One undisturbed run measures how long an apply takes here; the kills land across that span.
    t0 = time.perf_counter()
    child = start(base / "calibrate", base / "calibrate-state")
    assert child.stdout is not None
    child.stdout.readline()
    span = time.perf_counter() - t0
    child.wait()
    child.stdout.close()
    for n in range(runs):
        project, state = base / f"crash{n}", base / f"crash{n}-state"
        child = start(project, state)
        assert child.stdout is not None
        time.sleep(rnd.uniform(0.0, span * 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        report.applies += 1
        torn = [(project / f"m{i}.txt").read_text() == f"new {i}\n" for i in range(files)]
        report.interrupted += any(torn) and not all(torn)  # killed mid-write: recovery has work to do
        fs = ProjectFS(project, state_dir=state)  # recovery runs here
        new = [(project / f"m{i}.txt").read_text() == f"new {i}\n" for i in range(files)]
        active = fs.checkpoints.active()
        if any(new) and not all(new):
            report.half_applied += 1
        if all(new) and len(active) != 1:
            report.lost_checkpoints += 1
        if not any(new) and active:
            report.notes.append(f"run {n}: a checkpoint for nothing applied")
        report.notes.append(
            f"run {n}: {'applied' if all(new) else 'rolled back' if not any(new) else 'HALF'}"
            f"{' after recovery ' + repr(fs.recovered) if fs.recovered else ''}"
        )
        report.temp_files += sum(
            1 for p in project.iterdir() if p.name.endswith(TMP_SUFFIX)
        )  # after recovery
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    return report


# ---- ReDoS and hunk floods, with the event loop watched ----------------------------------------


@dataclass
class LagReport:
    attempts: int = 0
    refused_with_words: int = 0
    max_lag_ms: float = 0.0
    worst_call_s: float = 0.0
    notes: list[str] = field(default_factory=list)


async def _lag_probe(stop: asyncio.Event, out: list[float], tick: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(tick)
        out.append(max(0.0, loop.time() - t0 - tick))


REDOS = ["(a+)+$", "(a|aa)+$", "(a*)*b", "(x+x+)+y", "^(a+)+$", "(.*a){20}", "((a+)+)+c", r"(\w+\s?)+$"]


def redos_and_hunk_floods(base: Path, clock: Callable[[], float] = time.perf_counter) -> LagReport:
    """Catastrophic regexes through `search` and a 2,000-line hunk against a repetitive file through
    `apply_patch`, run the way the agent runs tools (an executor beside a live event loop), while a
    probe measures how late the loop wakes. Each must answer (a result or a refusal with words)."""
    project = base / "redos"
    project.mkdir(parents=True)
    (project / "evil.txt").write_text("a" * 60_000 + "!\n" + ("x" * 5000 + "\n") * 20)
    (project / "rep.py").write_text("    x = x + 1\n" * 100_000)
    fs = _fs(project)
    ctx = ToolContext(fs, redact=fs.redact)
    hunk = "".join(" " + "    x = x + 1\n" for _ in range(1999)) + "-nope\n+yes\n"
    calls: list[tuple[str, dict[str, Any]]] = [("search", {"query": q, "regex": True}) for q in REDOS]
    calls.append(
        ("apply_patch", {"patch": f"*** Begin Patch\n*** Update File: rep.py\n@@\n{hunk}*** End Patch"})
    )
    report = LagReport()

    async def main() -> None:
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.ensure_future(_lag_probe(stop, lags))
        loop = asyncio.get_running_loop()
        try:
            for name, args in calls:
                t0 = clock()
                res = await loop.run_in_executor(None, execute, name, args, ctx)
                report.worst_call_s = max(report.worst_call_s, clock() - t0)
                report.attempts += 1
                if res.ok or ("error" in res.output_text and len(res.output_text) > 20):
                    report.refused_with_words += not res.ok
                report.notes.append(f"{name} {args.get('query', 'hunk')!r}: {res.output_text[:90]!r}")
        finally:
            stop.set()
            await probe
        report.max_lag_ms = max(lags, default=0.0) * 1000

    asyncio.run(main())
    return report
