"""The first context ranks what matters (issue 15): on a fresh clone every file is "recent", and
tests/ filled the budget while the sources and README were only listed."""

from __future__ import annotations

import json

from app.adapters.git_facts import committed_paths
from app.context.snapshot import (
    COMMITTED,
    ENTRY,
    OTHER,
    README,
    SOURCE,
    TESTS,
    TOUCHED,
    FileVersion,
    RankFacts,
    build_initial_context,
    entry_points,
    rank,
    rank_key,
    snapshot_candidates,
)

NOW = 1_000_000.0


def fv(path: str, size: int = 400, mtime: float = NOW - 5) -> FileVersion:
    """A text file, modified seconds ago (a fresh clone: all of them)."""
    return FileVersion(path, "text", size, mtime, "d-" + path, "x = 1\n" * (size // 6))


FRESH_CLONE = [
    fv("README.md", 3000),
    fv("pyproject.toml", 900),
    fv("app/__init__.py", 10),
    fv("app/main.py", 2000),
    fv("app/core/engine.py", 5000),
    fv("app/core/util.py", 800),
    fv("docs/guide.md", 4000),
    *[fv(f"tests/test_{i:02}.py", 300) for i in range(40)],
    fv("tests/fixtures/data.json", 200),
    fv("tests/conftest.py", 500),
    fv("package-lock.json", 9000),
    fv("src_gen/api_pb2.py", 700),
]


def tier(path: str, facts: RankFacts | None = None, pins: tuple[str, ...] = ()) -> int:
    return rank_key(fv(path), pins, facts or RankFacts())[0]


def test_tiers() -> None:
    assert tier("README.md") == README and tier("docs/README.rst") == README
    assert tier("tests/README.md") != README
    assert tier("app/__main__.py") == ENTRY and tier("main.py") == ENTRY and tier("pyproject.toml") == ENTRY
    assert tier("app/lib/x.py", RankFacts(entry_points=frozenset({"app/lib/x.py"}))) == ENTRY
    assert tier("app/x.py", RankFacts(touched=("app/x.py",))) == TOUCHED
    assert tier("app/x.py", RankFacts(committed=("app/x.py",))) == COMMITTED
    assert tier("app/x.py") == SOURCE and tier("docs/guide.md") == OTHER
    for p in (
        "tests/test_a.py",
        "test/x.py",
        "pkg/test_util.py",
        "pkg/util_test.go",
        "web/a.spec.ts",
        "tests/fixtures/a.json",
        "conftest.py",
        "package-lock.json",
        "dist/app.js",
        "a/b_pb2.py",
        "static/app.min.js",
    ):
        assert tier(p) == TESTS, p
    assert tier("tests/test_a.py", RankFacts(committed=("tests/test_a.py",))) == TESTS  # tests stay last
    assert tier("tests/test_a.py", RankFacts(touched=("tests/test_a.py",))) == TOUCHED  # unless being edited


def test_fresh_clone_sends_readme_entry_points_and_sources_before_tests() -> None:
    """Every mtime is seconds old; the budget fits about half the files."""
    ctx = build_initial_context(FRESH_CLONE, {v.path: v for v in FRESH_CLONE}, 6000, now=NOW)
    sent = list(ctx.included)
    assert sent[:4] == ["README.md", "pyproject.toml", "app/main.py", "app/__init__.py"]
    for p in ("app/core/util.py", "app/core/engine.py"):
        assert p in sent
    firsts_test = min(i for i, p in enumerate(sent) if p.startswith("tests/"))
    assert firsts_test > sent.index("app/core/engine.py")
    assert "package-lock.json" not in sent and "src_gen/api_pb2.py" not in sent[:firsts_test]


def test_touched_and_git_history_lead() -> None:
    facts = RankFacts(
        touched=("app/core/util.py", "app/core/engine.py"), committed=("docs/guide.md", "app/core/util.py")
    )
    order = [v.path for v in rank(FRESH_CLONE, (), facts)]
    assert order[:2] == ["app/core/engine.py", "app/core/util.py"]  # the latest edit first
    assert order.index("docs/guide.md") < order.index("app/__init__.py")  # committed before other sources
    assert order.index("docs/guide.md") < order.index("tests/test_00.py")
    pins = ("tests/test_07.py",)
    assert next(v.path for v in rank(FRESH_CLONE, pins, facts)) == "tests/test_07.py"  # pins before all


def test_candidates_follow_the_ranking_within_the_budget() -> None:
    cands = snapshot_candidates(FRESH_CLONE, 2000, (), NOW)
    assert cands[:5] == ["README.md", "pyproject.toml", "app/main.py", "app/__init__.py", "app/core/util.py"]
    assert "app/core/engine.py" not in cands  # over a quarter of the budget: listed, not read
    ranked = [v.path for v in rank(FRESH_CLONE, ())]
    assert cands == [p for p in ranked if p in cands]  # in ranking order; tests only with room left
    assert sum(v.size for v in FRESH_CLONE if v.path in cands) <= 2000 * 4 * 1.5 + 3000


def test_entry_points_from_manifests() -> None:
    paths = [
        "app/main.py",
        "src/tool/cli.py",
        "lib/index.js",
        "bin/run.js",
        "pkg/__init__.py",
        "pkg/__main__.py",
    ]
    manifests = {
        "pyproject.toml": '[project.scripts]\nslip = "app.main:main"\n[tool.poetry.scripts]\nt = "tool.cli:run"\n',
        "package.json": json.dumps({"main": "./lib/index.js", "bin": {"run": "bin/run.js"}}),
        "setup.cfg": "[options.entry_points]\nconsole_scripts =\n    p = pkg:main\n",
    }
    assert entry_points(manifests, paths) == {
        "app/main.py",
        "src/tool/cli.py",
        "lib/index.js",
        "bin/run.js",
        "pkg/__init__.py",
        "pkg/__main__.py",
    }
    assert (
        entry_points({"pyproject.toml": "not [toml", "package.json": "{", "setup.cfg": "[["}, paths) == set()
    )


def test_git_log_parsing() -> None:
    text = "\napp/a.py\napp/b.py\n\napp/a.py\ntests/t.py\n"
    assert committed_paths(text) == ("app/a.py", "app/b.py", "tests/t.py")
