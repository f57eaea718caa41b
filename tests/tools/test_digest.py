"""Tests for app.tools.digest: tracebacks to key lines, the token budget, signatures, rerun targets."""

from __future__ import annotations

import pytest

from app.context.tokens import estimate_tokens
from app.tools.digest import Frame, RerunRefused, build_digest, parse_traceback, rerun_targets
from app.tools.testrun import TestRun, stuck

# Failure texts as the pytest plugin reports them (report.longreprtext, pytest 8 on Python 3.12).
ASSERT = """def test_add():
>       assert add(2, 3) == 5
E       assert -1 == 5
E        +  where -1 = add(2, 3)

tests/test_calc.py:6: AssertionError"""

DEEP = """x = 2

    @pytest.mark.parametrize("x", [1, 2, 3])
    def test_helper(x):
        print("lots of output " * 20)
>       assert helper(x) == x
               ^^^^^^^^^

tests/test_calc.py:16:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

x = 2

    def helper(x):
        if x > 1:
>           raise ValueError(f"bad x: {x} for {Obj()}")
E           ValueError: bad x: 2 for <pkg.calc.Obj object at 0x7f13ba53c740>

pkg/calc.py:18: ValueError"""

LIBRARY = """def test_parse():
>       assert parse("{bad") == {}
               ^^^^^^^^^^^^^

tests/test_calc.py:10:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _
pkg/calc.py:9: in parse
    return json.loads(text)
           ^^^^^^^^^^^^^^^^
/usr/lib/python3.12/json/__init__.py:346: in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

self = <json.decoder.JSONDecoder object at 0x7f13c165b9e0>, s = '{bad', idx = 0

    def raw_decode(self, s, idx=0):
        \"\"\"Decode a JSON document from ``s``.\"\"\"
        try:
>           obj, end = self.scan_once(s, idx)
                       ^^^^^^^^^^^^^^^^^^^^^^
E           json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)

/usr/lib/python3.12/json/decoder.py:353: JSONDecodeError"""

COLLECT = """ImportError while importing test module '/tmp/p/test_b.py'.
Hint: make sure your test modules/packages have valid Python names.
Traceback:
/usr/lib/python3.12/importlib/__init__.py:90: in import_module
    return _bootstrap._gcd_import(name[level:], package)
test_b.py:1: in <module>
    import nonexistent_mod
E   ModuleNotFoundError: No module named 'nonexistent_mod'"""

SYNTAX = """/usr/lib/python3.12/ast.py:52: in parse
    return compile(source, filename, mode, flags,
E     File "/tmp/p/test_syn.py", line 1
E       def test_c(:
E                  ^
E   SyntaxError: invalid syntax"""

CHAINED = """def f():
        try:
>           {}["k"]
E           KeyError: 'k'

test_chain.py:3: KeyError

The above exception was the direct cause of the following exception:

    def test_chain():
>       f()

test_chain.py:8:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

    def f():
        try:
            {}["k"]
        except KeyError as e:
>           raise RuntimeError("wrapped") from e
E           RuntimeError: wrapped

test_chain.py:5: RuntimeError

----------------------------- Captured stdout call -----------------------------
noise that the digest leaves out"""


def failing_run(*failures: tuple[str, str], passed: int = 0, duration: float = 0.5, **kw: object) -> TestRun:
    """A finished run of `passed` green tests and the given (nodeid, failure text) pairs."""
    run = TestRun(**kw)  # type: ignore[arg-type]
    run.apply({"kind": "run_started"})
    for i in range(passed):
        run.apply(
            {"kind": "phase", "nodeid": f"tests/test_ok.py::test_{i}", "when": "call", "category": "passed"}
        )
    for nodeid, text in failures:
        run.apply({"kind": "phase", "nodeid": nodeid, "when": "call", "category": "failed", "text": text})
    run.apply({"kind": "run_finished", "exitstatus": 1 if failures else 0, "duration": duration})
    return run


def test_assertion_failure_keeps_id_message_and_the_assert_line() -> None:
    """The simplest failure: the id, the assertion message, the `>` line and its `E` lines."""
    d = build_digest(
        failing_run(("tests/test_calc.py::test_add", ASSERT), passed=3), estimate=estimate_tokens
    )
    assert d.text.splitlines() == [
        "FAILED: 1 failed, 3 passed in 0.50s",
        "FAILED tests/test_calc.py::test_add - assert -1 == 5",
        "  tests/test_calc.py:6 in test_add: assert add(2, 3) == 5",
        "  E assert -1 == 5",
        "  E  +  where -1 = add(2, 3)",
    ]
    assert d.trimmed == 0 and d.tokens == estimate_tokens(d.text) and d.failing == 1
    assert d.counts["failed"] == 1 and d.counts["passed"] == 3 and d.duration == 0.5


def test_deep_traceback_drops_locals_carets_and_source_context() -> None:
    """Two project frames: both `>` lines stay; locals, caret lines and the surrounding source go."""
    d = build_digest(failing_run(("tests/test_calc.py::test_helper[2]", DEEP)), estimate=estimate_tokens)
    lines = d.text.splitlines()
    assert lines[1].startswith("FAILED tests/test_calc.py::test_helper[2] - ValueError: bad x: 2")
    assert "  tests/test_calc.py:16 in test_helper: assert helper(x) == x" in lines
    assert '  pkg/calc.py:18 in helper: raise ValueError(f"bad x: {x} for {Obj()}")' in lines
    assert not any("^^^" in ln or "x = 2" in ln or "lots of output" in ln for ln in lines)


def test_library_frames_are_collapsed_to_a_count() -> None:
    """Frames in the standard library are counted, not shown; the exception raised there is kept."""
    frames, _ = parse_traceback(LIBRARY)
    assert [(f.path, f.in_project) for f in frames] == [
        ("tests/test_calc.py", True),
        ("pkg/calc.py", True),
        ("/usr/lib/python3.12/json/__init__.py", False),
        ("/usr/lib/python3.12/json/decoder.py", False),
    ]
    d = build_digest(failing_run(("tests/test_calc.py::test_parse", LIBRARY)), estimate=estimate_tokens)
    assert "  pkg/calc.py:9 in parse: return json.loads(text)" in d.text
    assert "(2 frames outside the project, raised at /usr/lib/python3.12/json/decoder.py:353)" in d.text
    assert "  E json.decoder.JSONDecodeError: Expecting property name" in d.text
    assert "scan_once" not in d.text and "raw_decode" not in d.text


def test_collection_errors_and_syntax_errors() -> None:
    """Short-style tracebacks (collection) keep the preamble, the project frame and the message."""
    run = TestRun()
    run.apply({"kind": "collect_error", "nodeid": "test_b.py", "text": COLLECT})
    run.apply({"kind": "collect_error", "nodeid": "test_syn.py", "text": SYNTAX})
    run.apply({"kind": "run_finished", "exitstatus": 2, "duration": 0.1})
    d = build_digest(run, estimate=estimate_tokens)
    assert "ERROR collecting test_b.py - ModuleNotFoundError: No module named 'nonexistent_mod'" in d.text
    assert "  test_b.py:1 in <module>: import nonexistent_mod" in d.text
    assert "  ImportError while importing test module '/tmp/p/test_b.py'." in d.text
    assert "ERROR collecting test_syn.py - SyntaxError: invalid syntax" in d.text  # not the File "..." line


def test_chained_exceptions_keep_both_causes_and_skip_captured_output() -> None:
    """Both exceptions of a chain are shown; captured output sections are not."""
    d = build_digest(failing_run(("test_chain.py::test_chain", CHAINED)), estimate=estimate_tokens)
    assert "  E KeyError: 'k'" in d.text and "  E RuntimeError: wrapped" in d.text
    assert "FAILED test_chain.py::test_chain - RuntimeError: wrapped" in d.text
    assert "noise" not in d.text


def test_over_budget_tracebacks_go_first_and_ids_and_counts_stay() -> None:
    """Forty different failures in 1,200 tokens: every id and the counts stay, tracebacks are trimmed and counted."""
    failures = [
        (f"tests/test_calc.py::test_helper[{i}]", DEEP.replace("bad x: 2", f"bad x: {i}")) for i in range(40)
    ]
    run = failing_run(*failures, passed=100)
    full = build_digest(run, estimate=estimate_tokens, budget=100_000)
    d = build_digest(run, estimate=estimate_tokens, budget=1200)
    assert full.trimmed == 0 and full.tokens > 1200
    assert d.tokens <= 1200 < full.tokens
    assert d.text.startswith("FAILED: 40 failed, 100 passed in 0.50s")
    assert all(f"tests/test_calc.py::test_helper[{i}]" in d.text for i in range(40))
    assert d.trimmed > 0 and f"tracebacks trimmed for {d.trimmed} of 40 failures" in d.text
    assert d.hidden_ids == 0
    # The first failures keep their lines longest.
    assert d.text.index("pkg/calc.py:18") < d.text.index("test_helper[39]")


def test_failures_alike_point_to_the_first() -> None:
    """Thirty tests failing the same way (one bug, many tests) cost one traceback and thirty ids."""
    failures = [
        (f"tests/test_calc.py::test_helper[{i}]", DEEP.replace("x = 2", f"x = {i}")) for i in range(30)
    ]
    d = build_digest(failing_run(*failures), estimate=estimate_tokens)
    assert d.trimmed == 0 and d.text.count("pkg/calc.py:18") == 1
    assert "FAILED tests/test_calc.py::test_helper[29] - same error as test_helper[0]" in d.text
    assert len(d.signature) == 30


def test_ids_alone_over_budget_are_counted_not_dropped_silently() -> None:
    """When even the ids overflow, as many as fit are listed and the rest are counted."""
    run = failing_run(*((f"tests/test_many.py::test_case_number_{i}", ASSERT) for i in range(500)))
    d = build_digest(run, estimate=estimate_tokens, budget=300)
    assert d.tokens <= 300 and 0 < d.hidden_ids < 500
    assert f"... {d.hidden_ids} more failing tests not listed" in d.text
    assert "500 failed" in d.text.splitlines()[0]


def test_signature_is_ids_with_messages_addresses_masked() -> None:
    """Same ids and messages (object addresses aside) give one signature; another message another."""
    a = build_digest(failing_run(("t::x", DEEP)), estimate=estimate_tokens).signature
    b = build_digest(
        failing_run(("t::x", DEEP.replace("0x7f13ba53c740", "0x55aa"))), estimate=estimate_tokens
    ).signature
    c = build_digest(
        failing_run(("t::x", DEEP.replace("bad x: 2", "bad x: 3"))), estimate=estimate_tokens
    ).signature
    assert a == b == frozenset({("t::x", "ValueError: bad x: 2 for <pkg.calc.Obj object at 0x?>")})
    assert a != c
    assert stuck([a, b, b]) and not stuck([a, c, a])


def test_signatures_of_green_and_crashed_runs() -> None:
    """Green is the empty signature (never stuck); a crash without ids still has one."""
    green = failing_run(passed=2)
    assert build_digest(green, estimate=estimate_tokens).signature == frozenset()
    crashed = TestRun(exit_status=-11, note="the test process ended abruptly")
    sig = build_digest(crashed, estimate=estimate_tokens).signature
    assert sig and stuck([sig, sig, sig])


def test_other_runners_get_the_output_tail_within_budget() -> None:
    """Runners without events: counts from the summary line, then as much of the output tail as fits."""
    out = "\n".join(f"line {i} " + "x" * 60 for i in range(500)) + "\ntest result: FAILED. 4 passed; 1 failed"
    run = TestRun(runner="cargo", exit_status=101, finished=True, output_tail=out)
    run.counts.update(passed=4, failed=1)
    d = build_digest(run, estimate=estimate_tokens, budget=400)
    assert d.text.startswith("FAILED: 1 failed, 4 passed")
    assert d.text.rstrip().endswith("test result: FAILED. 4 passed; 1 failed")
    assert "line 0 " not in d.text and d.tokens <= 400 and "output (tail) (last" in d.text


def test_frame_for_a_failure_without_a_location() -> None:
    """Text with no traceback at all (a plain 'Failed: ...') still yields a message."""
    d = build_digest(failing_run(("t::y", "Failed: Timeout >5.0s")), estimate=estimate_tokens)
    assert "FAILED t::y - Failed: Timeout >5.0s" in d.text
    assert parse_traceback("") == ([], "")
    assert Frame("a.py", 1).in_project


# ---- rerun failed -------------------------------------------------------------------------------------


def test_rerun_targets_are_the_failed_ids_of_the_run() -> None:
    """Failed and errored tests and collection errors, in order, each once; passes are left out."""
    run = failing_run(("tests/a.py::test_x[1-2]", ASSERT), ("tests/a.py::T::test_y", ASSERT), passed=5)
    run.apply(
        {"kind": "phase", "nodeid": "tests/b.py::test_z", "when": "setup", "category": "error", "text": "x"}
    )
    run.apply({"kind": "collect_error", "nodeid": "tests/c.py", "text": COLLECT})
    assert rerun_targets(run) == [
        "tests/a.py::test_x[1-2]",
        "tests/a.py::T::test_y",
        "tests/b.py::test_z",
        "tests/c.py",
    ]


@pytest.mark.parametrize(
    ("nodeid", "why"),
    [
        ("-p evil", "cannot be rerun safely"),
        ("--rootdir=/", "cannot be rerun safely"),
        ("/etc/passwd::x", "cannot be rerun safely"),
        ("../up.py::x", "cannot be rerun safely"),
        ("C:/x.py::t", "cannot be rerun safely"),
        ("tests/a.py::t\n-p evil", "cannot be rerun safely"),
    ],
)
def test_rerun_targets_refuse_ids_that_could_be_options_or_escape(nodeid: str, why: str) -> None:
    """An id that could read as an option or leave the project is refused, whatever produced it."""
    with pytest.raises(RerunRefused, match=why):
        rerun_targets(failing_run((nodeid, ASSERT)))


def test_rerun_targets_say_why_there_is_nothing_to_rerun() -> None:
    """No run, a green run, another runner: a clear refusal each."""
    with pytest.raises(RerunRefused, match="no test run yet"):
        rerun_targets(None)
    with pytest.raises(RerunRefused, match="no failures"):
        rerun_targets(failing_run(passed=3))
    with pytest.raises(RerunRefused, match="needs pytest node ids"):
        rerun_targets(TestRun(runner="npm", exit_status=1, finished=True))
