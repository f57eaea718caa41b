"""The first context ranks what matters (issue 15): on a fresh clone every file is "recent", and
tests/ filled the budget while the sources and README were only listed."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.adapters.git_facts import committed_paths
from app.context.snapshot import (
    COMMITTED,
    ENTRY,
    OTHER,
    RANK_FIRST,
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
    ranked,
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


def test_a_big_tree_ranks_as_a_full_sort_would() -> None:
    """Past `RANK_FIRST` files the ranking is a partial sort, then the rest: the same order as sorting
    every key, read to the end or stopped early; test and generated folders of any case sink."""
    tree = [
        fv(f"{top}/{sub}/m{i}.py", size=100 + (i * 37) % 900)
        for i in range(3 * RANK_FIRST)
        for top, sub in [(("app", "Tests", "src", "vendor")[i % 4], f"d{i % 7}")]
    ] + FRESH_CLONE
    facts = RankFacts(touched=("src/d2/m2.py",), committed=("app/d0/m0.py",))
    expected = sorted(tree, key=lambda v: (*rank_key(v, ("app/d4/m4.py",), facts), v.path))
    got = [v.path for v in rank(tree, ("app/d4/m4.py",), facts)]
    assert got == [v.path for v in expected] and len(got) == len(tree)
    assert got[:3] == ["app/d4/m4.py", "src/d2/m2.py", "README.md"]  # the pin, the user's edit, README
    assert got.index("app/d0/m0.py") < got.index("app/d1/m8.py")  # committed before other sources
    assert [v.path for v in itertools.islice(ranked(tree, (), facts), 10)] == [
        v.path for v in rank(tree, (), facts)[:10]
    ]
    assert rank_key(fv("Tests/d1/m1.py"), (), RankFacts())[0] == TESTS
    assert rank_key(fv("VENDOR/x.py"), (), RankFacts())[0] == TESTS
    for name in (
        "a_test.go",
        "x.spec.ts",
        "y.test.js",
        "app.min.js",
        "foo.generated.cs",
        "b.js.map",
        "api_pb2_grpc.pyi",
    ):
        assert rank_key(fv(f"src/{name}"), (), RankFacts())[0] == TESTS, name
    for name in ("latest.py", "contest.py", "spec.ts", "test.py", "mapper.py"):
        assert rank_key(fv(f"src/{name}"), (), RankFacts())[0] == SOURCE, name


def test_ranking_in_small_batches_is_still_the_full_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 4, 16, 16, ... (the bounds made tiny) give the order of one full sort."""
    from app.context import snapshot

    monkeypatch.setattr(snapshot, "RANK_FIRST", 4)
    monkeypatch.setattr(snapshot, "RANK_BATCH_MAX", 16)
    tree = [fv(f"d{i % 5}/m{i}.py", size=50 + (i * 53) % 700) for i in range(300)] + FRESH_CLONE
    expected = sorted(tree, key=lambda v: (*rank_key(v, (), RankFacts()), v.path))
    assert [v.path for v in rank(tree, ())] == [v.path for v in expected]


def test_candidates_stop_once_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few bytes left over must not send the ranking through the rest of a big tree looking for a
    file small enough (it walked all 100,000 files of one): it stops when the room is nearly spent,
    or when a long run of files did not fit."""
    import app.context.snapshot as snapshot

    yielded = 0
    real = snapshot.ranked

    def counting(*args: Any, **kw: Any) -> Iterator[FileVersion]:
        nonlocal yielded
        for v in real(*args, **kw):
            yielded += 1
            yield v

    monkeypatch.setattr(snapshot, "ranked", counting)
    # 299 small sources fill a 1,000-token budget (6,000 bytes with slack) but for 20 bytes; 20,000
    # bigger ones follow, none of which fits
    tree = [fv(f"src/a{i:03}.py", 20) for i in range(299)]
    tree += [fv(f"src/z/b{i:05}.py", 500) for i in range(20_000)]
    out = snapshot_candidates(tree, 1000, ())
    assert len(out) == int(6000 * (1 - snapshot.CANDIDATES_FULL_SHARE)) // 20  # nearly full: done
    assert yielded == len(out)
    # a long run that does not fit ends it too, though plenty of room is left
    yielded = 0
    huge = [fv(f"src/h{i:05}.py", 50_000) for i in range(10_000)]
    out = snapshot_candidates([*huge, fv("src/z/late.py", 10)], 1000, ())
    assert yielded == snapshot.CANDIDATES_MISSES


def _tier_path_by_path(path: str) -> tuple[int, float]:
    """The name tiers as first written, everything decided from the path alone (the reference for
    `_path_tier`, which decides a folder's share once)."""
    from app.context import snapshot as s

    slash = path.rfind("/")
    base, folder = path[slash + 1 :], path[: slash + 1]
    depth = float(path.count("/"))
    if base.lower().startswith("readme") and depth <= 1 and not path.lower().startswith(("tests/", "test/")):
        return (README, depth)
    if (folder and s._TEST_OR_GENERATED_DIR.search(folder.lower())) or s._is_test_or_generated_name(base):
        return (TESTS, depth)
    if (base in s._CONVENTIONAL_ENTRIES and depth <= 2) or (base in s._MANIFESTS and depth == 0):
        return (ENTRY, depth)
    bare = base.lstrip(".")
    dot = bare.rfind(".")
    ext = bare[dot:] if dot > 0 else base
    return (SOURCE if ext in s.SOURCE_EXTENSIONS and ext not in s._DOC_OR_DATA else OTHER, depth)


def test_name_tiers_decided_per_folder_equal_the_path_by_path_rule() -> None:
    """`_path_tier` caches what a folder decides (depth, test/generated folder, whether a README
    there leads): for paths at every depth, in test folders of any case and next to them, each tier
    equals the path-by-path rule."""
    from app.context.snapshot import _path_tier

    folders = [
        "",
        "Tests/",
        "test/",
        "tests/x/",
        "docs/",
        "docs/a/",
        "src/",
        "src/vendor/",
        "TEST/",
        "é/",
        "a/b/c/",
    ]
    names = ["README.md", "readme", "ReadMe.txt", "READMEX", "main.py", "pyproject.toml", "setup.py",
             "index.ts", "test_x.py", "x_test.go", "a.spec.ts", "conftest.py", "yarn.lock", "x.min.js",
             ".hidden", ".env.py", "notes.md", "data.json", "Makefile", "lib.rs", "İreadme", "x.PY"]  # fmt: skip
    cache: dict[str, Any] = {}
    paths = [f + n for f, n in itertools.product(folders, names)]
    for p in paths * 2:  # the second round answers from the cache
        assert _path_tier(p, cache) == _tier_path_by_path(p), p
    assert {t for t, _ in map(_tier_path_by_path, paths)} == {README, ENTRY, TESTS, SOURCE, OTHER}
