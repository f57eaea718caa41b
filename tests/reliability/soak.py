"""`make soak`: the long form of the reliability suites, ending with one table.

Runs chaos (several seeds of 100 cuts, each compared with an uncut run), server restarts, 50
rotations with a connection age of a few seconds, fuzzing with fresh randomness, a flood of 1,100 idle
sockets with an authenticated client asking throughout (a failed answer counts as lost), the path-escape
attempts and the hostile-repository corpus (tests/security/attacks.py: links and case folds, secrets,
parallel applies, kill -9 mid-apply, ReDoS with a loop-lag probe); prints what it did and what it
lost. Exit status 1 unless items lost, escapes, secrets out and lost checkpoints are all 0.

    python -m tests.reliability.soak [--seeds 3] [--cuts 100] [--restarts 20] [--age 2.0] [--fuzz 10000]
                                     [--kills 30] [--security-only]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.flood import run_flood
from tests.reliability.fuzzing import run_fuzz
from tests.reliability.harness import ChaosReport, run_chaos
from tests.security import attacks
from tests.security.escapes import run_escapes


def _lost(report: ChaosReport, reference: ChaosReport | None) -> int:
    lost = report.lost + len(report.duplicated_changes) + len(report.unacked) + (0 if report.paired else 1)
    if reference is not None and report.transcript != reference.transcript:
        lost += 1 + abs(len(report.transcript) - len(reference.transcript))
    return lost


async def _soak(args: argparse.Namespace, work: Path, out: list[tuple[str, str]]) -> tuple[int, int]:
    lost = escapes = 0
    cuts = rotations = 0
    seeds = [random.randrange(1 << 30) for _ in range(args.seeds)]
    t0 = time.perf_counter()
    for n, seed in enumerate(seeds):
        cut = await run_chaos(work / f"cut{n}", seed=seed, cuts=args.cuts, timeout_s=600)
        ref = await run_chaos(work / f"ref{n}", seed=seed, cuts=0, requests=cut.requests, timeout_s=600)
        cuts += cut.cuts
        lost += _lost(cut, ref) + _lost(ref, None)
        print(
            f"chaos seed {seed}: {cut.cuts} cuts {cut.cut_phases} {cut.cut_labels}, "
            f"{cut.requests + 1} requests, {cut.http_turns} over HTTP, lost {_lost(cut, ref)}",
            flush=True,
        )
    out.append(("chaos time", f"{time.perf_counter() - t0:.1f} s"))
    t0 = time.perf_counter()
    restart = await run_chaos(work / "restart", seed=seeds[0], cuts=0, restarts=args.restarts, timeout_s=600)
    lost += _lost(restart, None)
    print(f"restarts: {restart.restarts} kills mid-response, lost {_lost(restart, None)}", flush=True)
    out.append(("restart time", f"{time.perf_counter() - t0:.1f} s"))
    t0 = time.perf_counter()
    rot = await run_chaos(
        work / "rotate",
        seed=seeds[0],
        cuts=0,
        rotations=50,
        max_age_s=args.age,
        timeout_s=50 * args.age * 3 + 60,
    )
    rotations = rot.rotations
    rot_lost = _lost(rot, None) + rot.retries + (rot.turns_ok - rot.server_turns != 0)
    lost += rot_lost
    print(
        f"rotations: {rot.rotations} at a {args.age:g} s age limit, {rot.retries} turns resent, "
        f"lost {rot_lost}",
        flush=True,
    )
    out.append(("rotation time", f"{time.perf_counter() - t0:.1f} s"))
    t0 = time.perf_counter()
    share = args.fuzz // 10
    fuzz = await asyncio.to_thread(run_fuzz, 4 * share, 3 * share, args.fuzz - 7 * share, derandomize=False)
    print(f"fuzz: {fuzz}", flush=True)
    out.append(("fuzz time", f"{time.perf_counter() - t0:.1f} s"))
    t0 = time.perf_counter()
    flood = await run_flood(args.flood)
    print(
        f"flood: {flood.sockets} idle sockets against a 1,024-fd server; authenticated answered "
        f"{flood.answered}/{flood.asked} (slowest {flood.worst_ms:.0f} ms); server stderr {flood.stderr_bytes} B",
        flush=True,
    )
    lost += flood.failed
    out.append(("flood time", f"{time.perf_counter() - t0:.1f} s"))
    esc = run_escapes(work / "escape")
    escapes = len(esc.escapes)
    for e in esc.escapes:
        print(f"ESCAPE: {e}", flush=True)
    sec_rows, sec_bad = await asyncio.to_thread(_security, work / "security", args.kills)
    escapes += sec_bad
    out[:0] = [
        (
            "cuts survived",
            f"{cuts}" + (f" (+{restart.restarts} server restarts)" if restart.restarts else ""),
        ),
        ("rotations", f"{rotations}"),
        ("fuzz cases", f"{fuzz.total}"),
        ("escape attempts", f"{esc.attempts}"),
        ("flood: idle sockets", f"{flood.sockets}"),
        (
            "flood: authenticated answered",
            f"{flood.answered}/{flood.asked} (slowest {flood.worst_ms:.0f} ms)",
        ),
        ("flood: server stderr", f"{flood.stderr_bytes} B"),
        ("items lost", f"{lost}"),
        ("escapes", f"{escapes}"),
        *sec_rows,
    ]
    return lost, escapes


def _security(work: Path, kills: int) -> tuple[list[tuple[str, str]], int]:
    """The hostile-repository rows; returns (rows, how many things got through)."""
    import statistics

    bad = 0
    sym = attacks.symlink_and_casefold_attacks(work / "links")
    for e in sym.escapes:
        print(f"ESCAPE: {e}", flush=True)
    sec = attacks.secrets_corpus(work / "secrets")
    for e in sec.out:
        print(f"SECRET OUT: {e}", flush=True)
    par = attacks.parallel_applies(work / "parallel", workers=6, rounds=20)
    kill = attacks.kill_mid_apply(work / "kill", runs=kills, files=30)
    lags = [attacks.redos_and_hunk_floods(work / f"redos{n}") for n in range(3)]
    lost_cp = par.lost_checkpoints + par.duplicate_ids + par.index_errors + kill.lost_checkpoints
    torn = kill.half_applied + kill.temp_files + par.wrong_content + par.reported_failed
    bad = len(sym.escapes) + len(sec.out) + lost_cp + torn
    lag = statistics.median(r.max_lag_ms for r in lags)
    print(
        f"security: {sym.attempts} link/case attempts, {sec.kinds} secret kinds, {par.applies} parallel applies, "
        f"{kill.applies} kills ({kill.interrupted} mid-write), loop lag {[round(r.max_lag_ms) for r in lags]} ms",
        flush=True,
    )
    return [
        ("link/case-fold attempts", f"{sym.attempts} ({len(sym.escapes)} escapes)"),
        ("secret kinds / out", f"{sec.kinds} / {len(sec.out)}"),
        ("parallel applies 6x20", f"{par.applies} ({par.reported_failed} failed, {par.wrong_content} wrong)"),
        (
            "kill -9 mid-apply",
            f"{kill.applies} ({kill.interrupted} mid-write, {kill.half_applied} half-applied, "
            f"{kill.temp_files} temp files)",
        ),
        ("lost checkpoints", f"{lost_cp}"),
        (
            "ReDoS/hunk max loop lag",
            f"{lag:.0f} ms median of 3 (worst call {max(r.worst_call_s for r in lags):.2f} s)",
        ),
    ], bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="chaos runs of --cuts cuts each (default 3)")
    p.add_argument("--cuts", type=int, default=100)
    p.add_argument("--restarts", type=int, default=20, help="server kills mid-response (default 20)")
    p.add_argument(
        "--age", type=float, default=2.0, help="connection age limit for the 50 rotations, seconds"
    )
    p.add_argument("--fuzz", type=int, default=10_000, help="fuzz cases in total")
    p.add_argument("--flood", type=int, default=1100, help="idle unauthenticated sockets in the flood row")
    p.add_argument("--kills", type=int, default=30, help="kill -9 mid-apply runs (default 30)")
    p.add_argument("--security-only", action="store_true", help="only the hostile-repository rows")
    args = p.parse_args(argv)
    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slipstream-soak-") as tmp:
        if args.security_only:
            rows, escapes = _security(Path(tmp), args.kills)
            lost = 0
        else:
            lost, escapes = asyncio.run(_soak(args, Path(tmp), rows))
    rows.append(("total time", f"{time.perf_counter() - started:.1f} s"))
    width = max(len(k) for k, _ in rows)
    print()
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    ok = lost == 0 and escapes == 0
    print(
        "\nsoak: "
        + (
            "PASS (0 lost, 0 escapes or secrets out)"
            if ok
            else f"FAIL ({lost} lost, {escapes} escapes, secrets out, torn or lost checkpoints)"
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
