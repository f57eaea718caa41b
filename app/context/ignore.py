"""Which project paths the model may see: .gitignore at every level, defaults, secrets, user rules.

Rules are layered; the first layer with a definite answer (match or negation) wins, highest first:

    user settings  >  protected + secrets  >  .slipstreamignore  >  .gitignore (deepest first)  >  defaults

Protected folders (`.git/` and the other VCS internals, which hold credential URLs and hooks) and
secrets sit above every file that comes with the repository, so neither a `!.env` in a .gitignore
(which means "track it in git") nor a committed `.slipstreamignore` with `!.env` or `!.git/` opts
them in: only the user's own settings can. Those two layers also match case-insensitively on every
file system (`.ENV`, `.Git/config`). The other layers match case-insensitively only where the file
system is (`casefold=True`, detected per root by the adapter). As in git, a path inside an excluded
directory is excluded whatever its own rules say.

Sans-I/O: the caller reads the .gitignore files and hands their text in (`add_gitignore`).
Paths are POSIX, relative to the project root, without a leading "./".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pathspec

__all__ = [
    "DEFAULT_EXCLUDES",
    "PROTECTED_PATTERNS",
    "SECRET_PATTERNS",
    "Exclusion",
    "IgnoreRules",
    "normalise_rel",
]

# Build output, virtualenvs, caches and VCS folders: never useful to the model, often huge.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    ".jj/",
    "node_modules/",
    "bower_components/",
    ".venv/",
    "venv/",
    ".env/",
    "env/",
    "__pypackages__/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".tox/",
    ".nox/",
    ".hypothesis/",
    ".cache/",
    ".gradle/",
    ".idea/",
    ".vs/",
    "build/",
    "dist/",
    "target/",
    "out/",
    "*.egg-info/",
    ".next/",
    ".nuxt/",
    ".parcel-cache/",
    "coverage/",
    "htmlcov/",
    ".coverage",
    ".DS_Store",
    "Thumbs.db",
    "*.swp",
    "*.swo",
    "*~",
    ".#*",
)

# Version-control internals: never sent, never read or written by the tools (hooks, credential URLs).
PROTECTED_PATTERNS: tuple[str, ...] = (".git/", ".hg/", ".svn/", ".jj/", ".git", ".gitmodules.lock")

# Files that usually hold credentials: excluded by default and shown as excluded ("secret").
SECRET_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.asc",
    "*.gpg",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".htpasswd",
    ".git-credentials",
    "credentials",
    "credentials.*",
    "*credentials*.json",
    "*-credentials.*",
    "secrets.*",
    "*.secret",
    "service-account*.json",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".docker/config.json",
    ".kube/config",
    "terraform.tfstate",
    "terraform.tfstate.*",
    "*.tfvars",
    # templates that name the keys but hold none (their lines are still scanned before they leave)
    "!.env.example",
    "!.env.sample",
    "!.env.template",
    "!.env.dist",
)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Why a path is excluded: `reason` is a short word for the UI, `source` where the rule lives."""

    reason: str  # "secret" | "protected" | "gitignored" | "default" | "slipstreamignore" | "settings"
    source: str  # ".gitignore", "src/.gitignore", ".slipstreamignore", "settings", "defaults"


def normalise_rel(path: str) -> str:
    """A root-relative POSIX path; raises ValueError for absolute paths or ones that climb out."""
    if (
        path
        and "\\" not in path
        and "//" not in path
        and "/." not in "/" + path
        and path[0] != "/"
        and path[-1] != "/"
        and not (len(path) > 1 and path[1] == ":")
    ):
        return path  # already normal (no empty, "." or ".." part, no leading "/"): what the slow path returns
    p = path.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise ValueError(f"path must be relative to the project root: {path!r}")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if any(s == ".." for s in parts):
        raise ValueError(f"path leaves the project root: {path!r}")
    if not parts:
        raise ValueError(f"empty path: {path!r}")
    return "/".join(parts)


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines([ln for ln in lines if ln.strip() and not ln.startswith("#")])


_Match = Callable[[str], "bool | None"]


def _matcher(spec: pathspec.GitIgnoreSpec) -> _Match | None:
    """`spec.check_file(path).include` for an already normal path, as one call: the spec's own
    matching backend when pathspec exposes it (skipping the path normalisation and the result
    object, half the cost of a check), None for a spec without patterns (it never answers)."""
    if not spec.patterns:
        return None
    backend = getattr(spec, "_backend", None)
    match_file = getattr(backend, "match_file", None)
    if callable(match_file):
        return lambda path: match_file(path)[0]
    return lambda path: spec.check_file(path).include


class IgnoreRules:
    """Decides, per root-relative path, whether it is excluded and why. Caches directory verdicts.

    Speed (indexing checks every file of the tree): each spec is matched through its backend in
    one call and a spec without patterns is skipped; the verdict of a folder's whole ancestry is
    cached per folder, so a file costs one lookup plus its own checks."""

    def __init__(
        self,
        *,
        user_patterns: Iterable[str] = (),
        slipstreamignore: str = "",
        defaults: Iterable[str] = DEFAULT_EXCLUDES,
        secrets: Iterable[str] = SECRET_PATTERNS,
        protected: Iterable[str] = PROTECTED_PATTERNS,
        casefold: bool = False,
    ) -> None:
        self.casefold = casefold
        fold = str.lower if casefold else str
        self._user = _matcher(_spec(fold(p) for p in user_patterns))
        self._project = _matcher(_spec(fold(p) for p in slipstreamignore.splitlines()))
        self._protected = _matcher(_spec(p.lower() for p in protected))
        self._secrets = _matcher(_spec(p.lower() for p in secrets))
        self._defaults = _matcher(_spec(fold(p) for p in defaults))
        # Quick negatives, one match instead of three for almost every file of a tree: no pattern of
        # the protected and secret lists (on the lower-case path), nor of the defaults (as written),
        # matches. A spec's matcher answers None exactly when none of its patterns matches at all.
        low_lists = [p.lower() for p in (*protected, *secrets)]
        self._guarded = _matcher(_spec(low_lists))
        self._builtin = _matcher(_spec([*low_lists, *(fold(p) for p in defaults)]))
        # directory ("" for the root) -> matcher of that directory's .gitignore (None: no patterns)
        self._gitignores: dict[str, _Match | None] = {}
        self._dir_cache: dict[str, Exclusion | None] = {}
        # directory -> the first verdict among its ancestors and itself ("" for the root: None)
        self._chain_cache: dict[str, Exclusion | None] = {}
        # directory -> the directories with a .gitignore that applies to a path in it, deepest first
        self._applies_cache: dict[str, list[str]] = {}

    def add_gitignore(self, directory: str, text: str) -> None:
        """Register the .gitignore found in `directory` ("" for the root); replaces an earlier one."""
        d = "" if directory in ("", ".") else self._fold(normalise_rel(directory))
        self._gitignores[d] = _matcher(_spec(self._fold(ln) for ln in text.splitlines()))
        self._forget()

    def _fold(self, s: str) -> str:
        return s.lower() if self.casefold else s

    def _forget(self) -> None:
        self._dir_cache.clear()
        self._chain_cache.clear()
        self._applies_cache.clear()

    def remove_gitignore(self, directory: str) -> None:
        """Forget the .gitignore of `directory` (it was deleted)."""
        d = "" if directory in ("", ".") else self._fold(normalise_rel(directory))
        if d in self._gitignores:
            del self._gitignores[d]
            self._forget()

    def exclusion(self, path: str, *, is_dir: bool = False) -> Exclusion | None:
        """The reason `path` is excluded, or None when the model may see it."""
        rel = normalise_rel(path)
        if self.casefold:
            rel = rel.lower()
        parent, _, _ = rel.rpartition("/")
        verdict = self._chain(parent) if parent else None
        if verdict is not None:
            return verdict
        if is_dir:
            return self._dir_verdict(rel)
        return self._decide(rel, is_dir=False)

    def file_judge(self, folder: str) -> Callable[[str], Exclusion | None]:
        """`exclusion(path)` for files of `folder` ("" for the root), the folder's share decided once:
        an index asks it of every file. `path` must be normal and in `folder`, as `normalise_rel`
        leaves it (the caller checks)."""
        if self.casefold:
            folder = folder.lower()
        verdict = self._chain(folder) if folder else None
        if verdict is not None:
            return lambda path: verdict
        decide = self._decide
        if self.casefold:
            return lambda path: decide(path.lower(), is_dir=False)
        return lambda path: decide(path, is_dir=False)

    def is_excluded(self, path: str, *, is_dir: bool = False) -> bool:
        """Shorthand for `exclusion(...) is not None`."""
        return self.exclusion(path, is_dir=is_dir) is not None

    def _chain(self, rel: str) -> Exclusion | None:
        """The first verdict among folder `rel`'s ancestors (outermost first) and `rel` itself."""
        cache = self._chain_cache
        if rel in cache:
            return cache[rel]
        todo = [rel]  # the uncached folders from `rel` up (no recursion: paths can be deep)
        parent = rel.rpartition("/")[0]
        while parent and parent not in cache:
            todo.append(parent)
            parent = parent.rpartition("/")[0]
        verdict = cache[parent] if parent else None
        for d in reversed(todo):
            if verdict is None:
                verdict = self._dir_verdict(d)
            cache[d] = verdict
        return verdict

    def _dir_verdict(self, rel: str) -> Exclusion | None:
        if rel not in self._dir_cache:
            self._dir_cache[rel] = self._decide(rel, is_dir=True)
        return self._dir_cache[rel]

    def _decide(self, rel: str, *, is_dir: bool) -> Exclusion | None:
        probe = rel + "/" if is_dir else rel
        if self._user is not None:
            hit = self._user(probe)
            if hit is not None:  # only the user's own settings may opt a secret or .git in
                return Exclusion("settings", "settings") if hit else None
        low = probe.lower()
        builtin = self._builtin
        quiet = builtin is None or (low == probe and builtin(low) is None)  # no built-in list matches
        guarded = not quiet and (self._guarded is None or self._guarded(low) is not None)
        if guarded and self._protected is not None and self._protected(low):
            return Exclusion("protected", "defaults")
        if guarded and self._secrets is not None and self._secrets(low):
            return Exclusion("secret", "defaults")
        if self._project is not None:
            hit = self._project(probe)
            if hit is not None:
                return Exclusion("slipstreamignore", ".slipstreamignore") if hit else None
        if self._gitignores:
            for d in self._gitignore_dirs_for(rel):
                match = self._gitignores[d]
                if match is None:
                    continue
                hit = match(probe if d == "" else probe[len(d) + 1 :])
                if hit is not None:
                    return (
                        Exclusion("gitignored", ".gitignore" if d == "" else f"{d}/.gitignore")
                        if hit
                        else None
                    )
        if not quiet and self._defaults is not None and self._defaults(probe):
            return Exclusion("default", "defaults")
        return None

    def _gitignore_dirs_for(self, rel: str) -> list[str]:
        """Directories whose .gitignore applies to `rel`, deepest first."""
        cache = self._applies_cache
        parent = rel.rpartition("/")[0]
        if parent in cache:
            return cache[parent]
        todo = []  # uncached folders from `parent` up; each one's list extends its parent's
        d = parent
        while d and d not in cache:
            todo.append(d)
            d = d.rpartition("/")[0]
        if d not in cache:  # d == "": the root's .gitignore applies to every path
            cache[d] = [""] if "" in self._gitignores else []
        got = cache[d]
        for d in reversed(todo):
            got = cache[d] = [d, *got] if d in self._gitignores else got
        return got
