"""Which third-party modules the official avatar code imports when our engine imports it.

    python scripts/upstream_imports.py \
        --checkout multitalk=/work/.mirror/MeiGen-AI+MultiTalk/repo \
        --checkout infinitetalk=/work/.mirror/MeiGen-AI+InfiniteTalk/repo \
        --write modal_workers/upstream_imports.json

The avatar image clones MeiGen-AI/MultiTalk and MeiGen-AI/InfiniteTalk at pinned commits
(modal_workers/avatar.py) and talkstack/engines/gpu/avatar.py imports their `wan` package in
process. A module that package imports at import time and the image lacks (InfiniteTalk's
`wan/utils/utils.py` imports `decord`) breaks every job at load, and only on a GPU container. This
reads the pinned commit of each checkout (a bare mirror will do: files are read with `git show`),
starts from the upstream modules our engine imports (found by parsing the engine with `ast`),
follows every import that runs at import time (module bodies and class bodies; not function
bodies, which run only when called) through the checkout's own modules, and records the
third-party top-level modules it meets. tests/unit/test_modal_images.py checks that the image
provides each of them.

An import inside `try:` whose handler catches ImportError (or Exception) is recorded as optional:
the upstream code runs without it. Imports inside functions are listed too, as `lazy`, for reading.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "talkstack" / "engines" / "gpu" / "avatar.py"
GUARDING_EXCEPTIONS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


class Source:
    """The Python files of one commit of a git repository (bare or not)."""

    def __init__(self, git_dir: Path, commit: str) -> None:
        self.git_dir, self.commit = git_dir, commit
        listing = self._git("ls-tree", "-r", "--name-only", commit)
        self.files = {line for line in listing.splitlines() if line.endswith(".py")}

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.git_dir), *args], check=True, capture_output=True, text=True
        ).stdout

    def read(self, path: str) -> str:
        return self._git("show", f"{self.commit}:{path}")

    def module_path(self, module: str) -> str | None:
        """The file that defines `module` in this checkout, or None if it is not ours."""
        base = module.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if candidate in self.files:
                return candidate
        return None

    def is_local(self, top: str) -> bool:
        return any(f == f"{top}.py" or f.startswith(f"{top}/") for f in self.files)


@dataclass
class Found:
    required: dict[str, set[str]] = field(default_factory=dict)
    """Third-party top-level module → the upstream files importing it at import time."""
    optional: dict[str, set[str]] = field(default_factory=dict)
    lazy: dict[str, set[str]] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ImportSite:
    module: str
    """Absolute dotted name (relative imports resolved)."""
    names: tuple[str, ...]
    """`from module import names` (empty for `import module`)."""
    guarded: bool
    lazy: bool


def _guards(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in GUARDING_EXCEPTIONS for t in types)


def import_sites(tree: ast.Module, package: str) -> list[ImportSite]:
    """Every import in a module, with whether it runs at import time and whether it is guarded."""
    sites: list[ImportSite] = []

    def visit(node: ast.AST, guarded: bool, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            sites.extend(ImportSite(alias.name, (), guarded, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            sites.append(ImportSite(base, tuple(a.name for a in node.names), guarded, lazy))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for child in ast.iter_child_nodes(node):
                visit(child, guarded, True)
        elif isinstance(node, ast.Try):
            safe = any(_guards(h) for h in node.handlers)
            for child in node.body:
                visit(child, guarded or safe, lazy)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded, lazy)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child, guarded, lazy)

    visit(tree, False, False)
    return sites


def _package_of(module: str, path: str) -> str:
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def scan(source: Source, entry: list[str]) -> Found:
    """Follow the import-time imports of `entry` modules through the checkout."""
    found = Found()
    pending = list(entry)
    while pending:
        module = pending.pop()
        # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name in found.visited:
                continue
            path = source.module_path(name)
            if path is None:
                continue
            found.visited.add(name)
            tree = ast.parse(source.read(path), filename=path)
            for site in import_sites(tree, _package_of(name, path)):
                top = site.module.split(".")[0]
                if not top:
                    continue
                if source.is_local(top):
                    if not site.lazy:
                        pending.append(site.module)
                        # `from pkg import sub` imports the submodule pkg.sub when there is one.
                        subs = (f"{site.module}.{n}" for n in site.names)
                        pending.extend(sub for sub in subs if source.module_path(sub))
                    continue
                if top in sys.stdlib_module_names or top == "__future__":
                    continue
                bucket = found.lazy if site.lazy else found.optional if site.guarded else found.required
                bucket.setdefault(top, set()).add(path)
    # A module required somewhere is required, whatever else guards it.
    for top in found.required:
        found.optional.pop(top, None)
        found.lazy.pop(top, None)
    for top in found.optional:
        found.lazy.pop(top, None)
    return found


def engine_entry_modules(engine: Path, local_tops: set[str]) -> list[str]:
    """The upstream modules talkstack's engine imports (those whose top level is in the checkout)."""
    modules = []
    for node in ast.walk(ast.parse(engine.read_text(), filename=str(engine))):
        if isinstance(node, ast.Import):
            modules += [a.name for a in node.names if a.name.split(".")[0] in local_tops]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules += [node.module] if node.module.split(".")[0] in local_tops else []
    return sorted(set(modules))


def pinned_commits() -> dict[str, str]:
    """model → commit, as the avatar image pins them."""
    sys.path.insert(0, str(REPO))
    from modal_workers.avatar import INFINITETALK_REPO, MULTITALK_REPO

    return {"multitalk": MULTITALK_REPO[1], "infinitetalk": INFINITETALK_REPO[1]}


def manifest(checkouts: dict[str, Path]) -> dict[str, object]:
    commits = pinned_commits()
    repos: dict[str, object] = {}
    for model, git_dir in sorted(checkouts.items()):
        source = Source(git_dir, commits[model])
        tops = {f.split("/")[0].removesuffix(".py") for f in source.files}
        entry = engine_entry_modules(ENGINE, tops)
        found = scan(source, entry)
        repos[model] = {
            "commit": commits[model],
            "entry": entry,
            "required": {k: sorted(v) for k, v in sorted(found.required.items())},
            "optional": {k: sorted(v) for k, v in sorted(found.optional.items())},
            "lazy": {k: sorted(v) for k, v in sorted(found.lazy.items())},
            "modules_visited": sorted(found.visited),
        }
    return {"generated_by": "scripts/upstream_imports.py", "repos": repos}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, help="MODEL=GIT_DIR (bare is fine)")
    parser.add_argument("--write", type=Path, help="write the manifest here (default: print it)")
    args = parser.parse_args(argv)
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    text = json.dumps(manifest({k: Path(v) for k, v in checkouts.items()}), indent=2) + "\n"
    if args.write:
        args.write.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
