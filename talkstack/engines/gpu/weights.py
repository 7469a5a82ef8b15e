"""The weights downloader: puts the repositories of the weights catalogue (weights_catalog.py)
on disk (the `talkstack-weights` Modal Volume, or any local folder) and checks them.

    specs = specs_for(["multitalk", "chatterbox"])      # deduplicated, catalogue order
    for spec in specs:
        download(spec, Path("/weights"))                 # idempotent; refuses unpinned repos
    run_setup(MULTITALK_CKPT, Path("/weights"))          # MultiTalk's index swap, in its own folder
    paths_for("multitalk", Path("/weights"))             # role → path, for the engines

A repository the catalogue does not pin is fetched at the commit its default branch resolves to
then (allowed explicitly), and that commit is recorded in a lock file beside it
(`.talkstack-revision.json`) which serves as its pin afterwards; the line to paste into the
catalogue is printed. The engines check what is on disk against the pin or the lock
(`verify_model`) before loading anything.

Layout: `<root>/<org>/<name>` per repository (what `local_dir` returns), plus composed folders
under `<root>/_talkstack/` for set-up steps. A repository folder counts as complete only when it
holds `.talkstack-weights.json`, written last and atomically after a successful download: an
interrupted download leaves no manifest, so the next run downloads again (huggingface_hub resumes
the partial files) instead of trusting a half-filled folder.

The catalogue's names (`CATALOGUE`, `MODEL_IDS`, `WeightSpec`, …) are re-exported here, so callers
keep one import for the catalogue and what is done with it.

Only the standard library is imported here; huggingface_hub is imported inside `download`, so the
catalogue imports anywhere (the CLI, the Lambda package, tests).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from talkstack.engines.gpu.weights_catalog import CATALOGUE as CATALOGUE
from talkstack.engines.gpu.weights_catalog import MODEL_IDS as MODEL_IDS
from talkstack.engines.gpu.weights_catalog import MULTITALK_CKPT as MULTITALK_CKPT
from talkstack.engines.gpu.weights_catalog import SETUP_STEPS as SETUP_STEPS
from talkstack.engines.gpu.weights_catalog import SetupStep as SetupStep
from talkstack.engines.gpu.weights_catalog import WeightSpec as WeightSpec

MANIFEST = ".talkstack-weights.json"
LOCK = ".talkstack-revision.json"
"""For a repository the catalogue does not pin: the commit its default branch resolved to the first
time it was fetched. Written before the download starts (a resumed download stays on that commit)
and read as the pin from then on, until the catalogue carries one (`pin_line` prints the edit)."""
SETUP_MARKER = ".talkstack-setup.json"
SETUP_ROOT = "_talkstack"
"""Composed folders live under `<root>/_talkstack/`: Hub org names cannot start with `_`, so this
never collides with a repository folder."""

SMALL_FILE_BYTES = 16 * 1024 * 1024
"""Files up to this size are hashed locally (configs, tokenizers, indexes: cheap, and the ones a
bad edit would break). Large files are checked by size, and their Hub etag (the LFS sha256) is
recorded: hashing ~80 GB on every verify would cost minutes."""

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


class WeightsError(RuntimeError):
    """Weights could not be put on disk, or are not what the catalogue says."""


class UnpinnedError(WeightsError):
    """A repository without a pinned commit, and the caller did not allow unpinned downloads."""


class IncompleteDownloadError(WeightsError):
    """The download finished without every file the spec requires (no manifest is written)."""


# ---------------------------------------------------------------------------------------------
# Lookups in the catalogue
# ---------------------------------------------------------------------------------------------


def spec_for_repo(repo_id: str) -> WeightSpec:
    for spec in CATALOGUE:
        if spec.repo_id == repo_id:
            return spec
    raise KeyError(repo_id)


def _validate_models(model_ids: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(model_ids))
    unknown = [m for m in wanted if m not in MODEL_IDS]
    if unknown:
        raise ValueError(f"unknown model id(s) {', '.join(unknown)}; known: {', '.join(MODEL_IDS)}")
    return wanted


def resolve_models(text: str) -> list[str]:
    """`"all"` or a comma-separated list (`"multitalk,chatterbox"`) → validated model ids."""
    if text.strip().lower() == "all":
        return list(MODEL_IDS)
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    if not wanted:
        raise ValueError(f"no model ids given; use 'all' or some of: {', '.join(MODEL_IDS)}")
    return _validate_models(wanted)


def specs_for(model_ids: Iterable[str]) -> list[WeightSpec]:
    """The repositories these models need, each once, in catalogue order."""
    wanted = set(_validate_models(model_ids))
    return [spec for spec in CATALOGUE if wanted & set(spec.model_ids)]


def setups_for(model_ids: Iterable[str]) -> list[SetupStep]:
    wanted = set(_validate_models(model_ids))
    return [step for step in SETUP_STEPS if wanted & set(step.model_ids)]


def local_dir(root: Path | str, spec: WeightSpec) -> Path:
    """`<root>/<org>/<name>`: where `spec` is downloaded (what the engines read)."""
    org, name = spec.repo_id.split("/")
    return Path(root) / org / name


def setup_dir(root: Path | str, step: SetupStep) -> Path:
    return Path(root) / SETUP_ROOT / step.name


def paths_for(model_id: str, root: Path | str) -> dict[str, Path]:
    """Role → path of every input `model_id` reads (a folder, or the file named by `entry`)."""
    (model,) = _validate_models([model_id])
    paths = {
        spec.role: local_dir(root, spec) / spec.entry if spec.entry else local_dir(root, spec)
        for spec in CATALOGUE
        if model in spec.model_ids
    }
    paths.update({step.role: setup_dir(root, step) for step in SETUP_STEPS if model in step.model_ids})
    return paths


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

Status = Literal["downloaded", "already present", "set up", "refused", "failed", "skipped"]
_OK: frozenset[str] = frozenset({"downloaded", "already present", "set up"})


@dataclass(frozen=True)
class DownloadReport:
    """What happened to one repository (or set-up step) in one run; one row of the table."""

    name: str
    """Repository id, or `setup:<name>` for a set-up step."""
    status: Status
    path: str
    revision: str | None = None
    """The commit on disk (the pin, or what an allowed unpinned download resolved to)."""
    pinned: bool = True
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    licence: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in _OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    path: str
    problems: tuple[str, ...] = ()
    revision: str | None = None
    files: int = 0
    bytes: int = 0


def human_size(n_bytes: float) -> str:
    """Decimal units, as the Hub and `size_gb` count: 9_950_000_000 → '9.95 GB'."""
    if n_bytes < 1000:
        return f"{int(n_bytes)} B"
    value = float(n_bytes)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of `DownloadReport.to_dict()` rows, with a total."""
    header = ("repository", "revision", "size", "files", "status")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        revision = (row.get("revision") or "-")[:12]
        if not row.get("pinned", True):
            revision = f"UNPINNED {revision}"
        status = row["status"] + (f" ({row['message']})" if not row.get("ok") and row.get("message") else "")
        lines.append(
            (row["name"], revision, human_size(row.get("bytes", 0)), str(row.get("files", 0)), status)
        )
    total = sum(int(r.get("bytes", 0)) for r in rows if not str(r["name"]).startswith("setup:"))
    lines.append(("total", "", human_size(total), "", ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    rendered.insert(len(rendered) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


# ---------------------------------------------------------------------------------------------
# Manifest and verification
# ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: str, patterns: Iterable[str]) -> bool:
    # huggingface_hub's own rule: fnmatch on the repo path, a trailing "/" meaning the whole folder.
    return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)


def _hub_metadata(folder: Path, rel: str) -> tuple[str, str] | None:
    """(commit, etag) that huggingface_hub recorded for `rel` when it downloaded it into `folder`
    (`.cache/huggingface/download/<rel>.metadata`: commit, etag, timestamp, one per line)."""
    meta = folder / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return (lines[0].strip(), lines[1].strip()) if len(lines) >= 2 else None


def _walk(folder: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == folder:
            dirnames[:] = [d for d in dirnames if d != ".cache"]  # huggingface_hub's bookkeeping
        for name in filenames:
            rel = (here / name).relative_to(folder).as_posix()
            if not rel.startswith(".talkstack-"):
                found.append(rel)
    return sorted(found)


def _shard_problems(folder: Path, index_rel: str, present: set[str] | None = None) -> list[str]:
    """Shards listed by a `*.safetensors.index.json` that are missing beside it."""
    index = folder / index_rel
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{index_rel}: unreadable shard index ({exc})"]
    parent = Path(index_rel).parent
    problems = []
    for shard in sorted(set(weight_map.values())):
        rel = (parent / shard).as_posix()
        if (present is not None and rel not in present) or not (folder / rel).exists():
            problems.append(f"{index_rel} lists {rel}, which is missing")
    return problems


def _build_manifest(spec: WeightSpec, folder: Path, revision: str | None = None) -> dict[str, Any]:
    """List what the download put in `folder` for this spec (at `revision`, default the pin), or
    raise IncompleteDownloadError."""
    candidates = [rel for rel in _walk(folder) if _matches(rel, spec.allow_patterns)]
    meta = {rel: _hub_metadata(folder, rel) for rel in candidates}
    revision = revision or spec.revision
    if revision is None:
        commits = [m[0] for m in meta.values() if m]
        revision = max(set(commits), key=commits.count) if commits else None
    # A file whose metadata names another commit is left over from an earlier pin: not ours.
    files = [rel for rel in candidates if meta[rel] is None or revision is None or meta[rel][0] == revision]
    problems = [f"{rel} is missing" for rel in spec.required if rel not in files]
    if not files:
        problems.append("nothing matched the allow patterns")
    if spec.check_shard_indexes:
        for rel in files:
            if rel.endswith(".safetensors.index.json"):
                problems += _shard_problems(folder, rel, set(files))
    if problems:
        raise IncompleteDownloadError(f"{spec.repo_id}: download incomplete: {'; '.join(problems)}")
    entries = []
    for rel in files:
        path = folder / rel
        size = path.stat().st_size
        m = meta[rel]
        entries.append(
            {
                "path": rel,
                "size": size,
                "sha256": _sha256(path) if size <= SMALL_FILE_BYTES else None,
                "etag": m[1] if m else None,
            }
        )
    return {
        "schema": 1,
        "repo_id": spec.repo_id,
        "revision": revision,
        "pinned": spec.pinned,
        "allow_patterns": list(spec.allow_patterns),
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_bytes": sum(e["size"] for e in entries),
        "files": entries,
    }


def _write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    # Temp name then rename: a crash mid-write never leaves a half manifest that parses.
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2, sort_keys=True)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def read_lock(spec: WeightSpec, root: Path | str) -> str | None:
    """The commit recorded for an unpinned `spec` on this volume (None: never fetched, or damaged)."""
    lock = _read_json(local_dir(root, spec) / LOCK)
    if lock is None or lock.get("repo_id") != spec.repo_id:
        return None
    revision = lock.get("revision")
    return revision if isinstance(revision, str) and len(revision) == 40 else None


def expected_revision(spec: WeightSpec, root: Path | str) -> str | None:
    """The commit that must be on disk: the catalogue's pin, else this volume's lock."""
    return spec.revision or read_lock(spec, root)


def pin_line(spec: WeightSpec, revision: str) -> str:
    """What to paste over the spec's `revision=None, pin_status=…` in weights_catalog.py."""
    return (
        f"PIN {spec.repo_id}: in talkstack/engines/gpu/weights_catalog.py set "
        f'revision="{revision}", pin_status="pinned", '
        f'source="resolved from the default branch by modal_workers.weights ({LOCK})"'
    )


def _write_lock(spec: WeightSpec, folder: Path, revision: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "repo_id": spec.repo_id,
        "revision": revision,
        "resolved_from": "default branch",
        "resolved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pin": pin_line(spec, revision),
    }
    _write_json_atomically(folder / LOCK, document)


def verify(spec: WeightSpec, root: Path | str, *, hashes: bool = True) -> VerifyReport:
    """Is `spec` completely on disk? Every manifest file at its recorded size (small files also by
    sha256 unless `hashes=False`), every required file present, every shard index satisfied, and
    the revision the catalogue pins (or, unpinned, the one this volume's lock recorded)."""
    folder = local_dir(root, spec)
    if not folder.is_dir():
        return VerifyReport(False, str(folder), ("not downloaded",))
    manifest = _read_json(folder / MANIFEST)
    if manifest is None:
        return VerifyReport(False, str(folder), (f"no {MANIFEST}: never completed, or interrupted",))
    problems: list[str] = []
    if manifest.get("repo_id") != spec.repo_id:
        problems.append(f"manifest is for {manifest.get('repo_id')!r}")
    revision = manifest.get("revision")
    expected = expected_revision(spec, root)
    if expected is None:
        problems.append(f"unpinned and no {LOCK}: the commit on disk was never recorded")
    elif revision != expected:
        which = "pinned" if spec.pinned else f"locked ({LOCK})"
        problems.append(f"manifest revision {revision} is not the {which} {expected}")
    listed: set[str] = set()
    total = 0
    for entry in manifest.get("files") or []:
        rel, size = entry.get("path"), entry.get("size")
        listed.add(rel)
        path = folder / rel
        try:
            actual = path.stat().st_size
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        total += actual
        if actual != size:
            problems.append(f"{rel} is {actual} bytes, expected {size}")
        elif hashes and entry.get("sha256") and _sha256(path) != entry["sha256"]:
            problems.append(f"{rel} does not match its sha256")
    problems += [f"{rel} is missing (required)" for rel in spec.required if rel not in listed]
    if spec.check_shard_indexes:
        for rel in sorted(listed):
            if rel.endswith(".safetensors.index.json") and (folder / rel).exists():
                problems += _shard_problems(folder, rel)
    return VerifyReport(not problems, str(folder), tuple(problems), revision, len(listed), total)


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


def _warn_unpinned(spec: WeightSpec, log: Log) -> None:
    bar = "!" * 100
    message = (
        f"{bar}\nWARNING: {spec.repo_id} is NOT PINNED: downloading whatever its main branch holds now.\n"
        f"The bytes can change under a deployed engine. {spec.pin_status}\n{bar}"
    )
    print(message, file=sys.stderr, flush=True)
    if log is not _print:
        log(message)


def _resolve_default_branch(spec: WeightSpec, token: str | None) -> str:
    """The commit the repository's default branch points at now (one Hub API call)."""
    from huggingface_hub import HfApi  # the network boundary; imported only here

    sha = HfApi(token=token).model_info(spec.repo_id).sha
    if not isinstance(sha, str) or len(sha) != 40:
        raise WeightsError(f"{spec.repo_id}: the Hub returned no commit for the default branch ({sha!r})")
    return sha


def download(
    spec: WeightSpec,
    root: Path | str,
    token: str | None = None,
    *,
    allow_unpinned: bool = False,
    log: Log = _print,
) -> DownloadReport:
    """Put `spec` under `local_dir(root, spec)`, unless it is already there and verifies.

    Idempotent: a verified folder is skipped without touching the network. Otherwise
    `huggingface_hub.snapshot_download` fetches (resuming partial files), the result is checked
    (required files, shard indexes) and only then is the manifest written. Raises UnpinnedError
    for an unpinned spec unless `allow_unpinned`, IncompleteDownloadError when files are missing
    afterwards, and whatever huggingface_hub raises (network, revision not found).

    An unpinned spec, allowed: its default branch is resolved to a commit (`HfApi.model_info`),
    recorded in `LOCK` before anything is fetched, downloaded at that commit, and the catalogue
    edit that pins it is logged (`pin_line`) and returned as the report's message. A later run
    uses the lock (no flag needed): the volume never drifts to a newer commit."""
    folder = local_dir(root, spec)
    present = verify(spec, root)
    if present.ok:
        message = ""
        if not spec.pinned and present.revision:
            _warn_unpinned(spec, log)
            message = pin_line(spec, present.revision)
            log(message)
        log(f"{spec.repo_id}: already present ({present.files} files, {human_size(present.bytes)})")
        return DownloadReport(
            name=spec.repo_id,
            status="already present",
            path=str(folder),
            revision=present.revision,
            pinned=spec.pinned,
            files=present.files,
            bytes=present.bytes,
            licence=spec.licence,
            message=message,
        )
    revision = expected_revision(spec, root)
    if revision is None:  # unpinned, never fetched here: resolve the default branch once, lock it
        if not allow_unpinned:
            raise UnpinnedError(f"refusing to download {spec.repo_id}: {spec.pin_status} (or allow unpinned)")
        _warn_unpinned(spec, log)
        revision = _resolve_default_branch(spec, token)
        _write_lock(spec, folder, revision)
        log(f"{spec.repo_id}: resolved the default branch to {revision}; recorded in {folder / LOCK}")
    elif not spec.pinned:
        _warn_unpinned(spec, log)
        log(f"{spec.repo_id}: resuming at the locked commit {revision} ({folder / LOCK})")

    from huggingface_hub import snapshot_download  # the network boundary; imported only here

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    # A stale manifest (other pin, damaged files) must not outlive a download that may stop halfway.
    (folder / MANIFEST).unlink(missing_ok=True)
    shown = revision if spec.pinned else f"{revision} (UNPINNED, locked)"
    log(f"{spec.repo_id}: downloading @ {shown} (~{spec.size_gb:g} GB)")
    # Always a commit, never a branch: the bytes are those of the recorded revision even if the
    # branch moves while (or after) this runs.
    snapshot_download(
        repo_id=spec.repo_id,
        revision=revision,
        allow_patterns=list(spec.allow_patterns),
        local_dir=str(folder),
        token=token,
    )
    manifest = _build_manifest(spec, folder, revision)
    _write_json_atomically(folder / MANIFEST, manifest)
    check = verify(spec, root)
    if not check.ok:  # e.g. a file changed between listing and hashing
        (folder / MANIFEST).unlink(missing_ok=True)
        raise WeightsError(f"{spec.repo_id}: does not verify after download: {'; '.join(check.problems)}")
    seconds = time.monotonic() - started
    log(f"{spec.repo_id}: downloaded {check.files} files, {human_size(check.bytes)} in {seconds:.0f} s")
    message = ""
    if not spec.pinned:
        message = pin_line(spec, revision)
        _warn_unpinned(spec, log)
        log(message)
    return DownloadReport(
        name=spec.repo_id,
        status="downloaded",
        path=str(folder),
        revision=check.revision,
        pinned=spec.pinned,
        files=check.files,
        bytes=check.bytes,
        seconds=round(seconds, 1),
        licence=spec.licence,
        message=message,
    )


# ---------------------------------------------------------------------------------------------
# Set-up steps (MultiTalk's composed checkpoint folder)
# ---------------------------------------------------------------------------------------------


def _top_level_names(spec: WeightSpec, root: Path | str) -> list[str]:
    manifest = _read_json(local_dir(root, spec) / MANIFEST) or {}
    return sorted({str(e["path"]).split("/")[0] for e in manifest.get("files") or []})


def _setup_targets(step: SetupStep, root: Path | str) -> dict[str, Path]:
    base = spec_for_repo(step.base_repo)
    targets = {name: local_dir(root, base) / name for name in _top_level_names(base, root)}
    for repo, rel in step.overlays:  # an overlay replaces the base's entry of the same name
        targets[Path(rel).name] = local_dir(root, spec_for_repo(repo)) / rel
    return targets


def _link(target: Path, link: Path) -> str:
    """A relative symlink (valid wherever the volume is mounted); where the filesystem has none,
    a hard link, and only then a copy."""
    try:
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=target.is_dir())
        return "symlink"
    except OSError:
        pass
    if target.is_dir():
        shutil.copytree(target, link)
        return "copy"
    try:
        os.link(target, link)
        return "hardlink"
    except OSError:
        shutil.copy2(target, link)
        return "copy"


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def verify_setup(step: SetupStep, root: Path | str) -> VerifyReport:
    """The composed folder exists, matches the inputs' current revisions, every entry resolves,
    and its shard index (MultiTalk's) finds every shard it lists."""
    folder = setup_dir(root, step)
    marker = _read_json(folder / SETUP_MARKER)
    if marker is None:
        return VerifyReport(False, str(folder), ("not set up",))
    problems: list[str] = []
    for repo in dict.fromkeys([step.base_repo, *(r for r, _ in step.overlays)]):
        check = verify(spec_for_repo(repo), root)
        if not check.ok:
            problems.append(f"input {repo} does not verify")
        elif marker.get("inputs", {}).get(repo) != check.revision:
            problems.append(f"set up from {repo}@{marker.get('inputs', {}).get(repo)}, now {check.revision}")
    entries = marker.get("entries") or {}
    problems += [f"{name} does not resolve" for name in sorted(entries) if not (folder / name).exists()]
    for name in sorted(entries):
        if name.endswith(".safetensors.index.json") and (folder / name).exists():
            problems += _shard_problems(folder, name)
    return VerifyReport(not problems, str(folder), tuple(problems), files=len(entries))


def run_setup(step: SetupStep, root: Path | str, *, log: Log = _print) -> DownloadReport:
    """Compose `step`'s folder (idempotent: a folder that verifies is left alone). Skipped, not
    failed, when an input repository is not downloaded."""
    folder = setup_dir(root, step)
    name = f"setup:{step.name}"
    inputs: dict[str, str | None] = {}
    for repo in dict.fromkeys([step.base_repo, *(r for r, _ in step.overlays)]):
        check = verify(spec_for_repo(repo), root)
        if not check.ok:
            message = f"{repo} is not downloaded"
            log(f"{name}: skipped: {message}")
            return DownloadReport(name=name, status="skipped", path=str(folder), message=message)
        inputs[repo] = check.revision
    if verify_setup(step, root).ok:
        log(f"{name}: already present")
        return DownloadReport(name=name, status="already present", path=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SETUP_MARKER).unlink(missing_ok=True)
    for child in folder.iterdir():
        _remove(child)
    targets = _setup_targets(step, root)
    methods = {entry: _link(target, folder / entry) for entry, target in sorted(targets.items())}
    problems = [f"{n} does not resolve" for n in targets if not (folder / n).exists()]
    for entry in targets:
        if entry.endswith(".safetensors.index.json"):
            problems += _shard_problems(folder, entry)
    if problems:
        raise WeightsError(f"{name}: composed folder is incomplete: {'; '.join(problems)}")
    _write_json_atomically(
        folder / SETUP_MARKER,
        {
            "step": step.name,
            "why": step.why,
            "inputs": inputs,
            "entries": {e: os.path.relpath(t, folder) for e, t in sorted(targets.items())},
            "methods": methods,
            "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    copies = sorted(e for e, how in methods.items() if how == "copy")
    message = f"copied (no links on this filesystem): {', '.join(copies)}" if copies else ""
    log(f"{name}: set up {len(targets)} entries in {folder}" + (f"; {message}" if message else ""))
    return DownloadReport(name=name, status="set up", path=str(folder), files=len(targets), message=message)


# ---------------------------------------------------------------------------------------------
# Everything a set of models needs
# ---------------------------------------------------------------------------------------------


def verify_model(model_id: str, root: Path | str) -> list[str]:
    """What keeps `model_id` from loading the catalogue's weights from `root`: every repository
    complete at its pin (or, unpinned, at the commit its lock recorded) and every set-up folder
    built from those. Sizes and revisions only — no hashing, so an engine can afford it on every
    cold start. Empty when ready."""
    (model,) = _validate_models([model_id])
    problems = []
    for spec in specs_for([model]):
        check = verify(spec, root, hashes=False)
        problems += [f"{spec.repo_id}: {problem}" for problem in check.problems]
    for step in setups_for([model]):
        check = verify_setup(step, root)
        problems += [f"setup:{step.name}: {problem}" for problem in check.problems]
    return problems


def prepare(
    model_ids: Iterable[str],
    root: Path | str,
    *,
    token: str | None = None,
    allow_unpinned: bool = False,
    after_each: Callable[[DownloadReport], None] | None = None,
    log: Log = _print,
) -> list[DownloadReport]:
    """Download and verify every repository `model_ids` need, then run their set-up steps.

    One failure does not stop the rest (a refused unpinned repo still lets the pinned ones land);
    each outcome is a row. `after_each` runs after every row (the Modal app commits the volume
    there, so a long run keeps what it finished)."""
    wanted = _validate_models(model_ids)
    reports: list[DownloadReport] = []

    def record(report: DownloadReport) -> None:
        reports.append(report)
        if after_each is not None:
            after_each(report)

    for spec in specs_for(wanted):
        failure: Status | None = None
        try:
            record(download(spec, root, token, allow_unpinned=allow_unpinned, log=log))
            continue
        except UnpinnedError as exc:
            failure, message = "refused", str(exc)
        except Exception as exc:  # one repository's failure must not cost the others
            failure, message = "failed", f"{type(exc).__name__}: {exc}"
        log(f"{spec.repo_id}: {failure}: {message}")
        path = str(local_dir(root, spec))
        record(
            DownloadReport(
                name=spec.repo_id,
                status=failure,
                path=path,
                revision=spec.revision,
                pinned=spec.pinned,
                licence=spec.licence,
                message=message,
            )
        )
    for step in setups_for(wanted):
        try:
            record(run_setup(step, root, log=log))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log(f"setup:{step.name}: failed: {message}")
            record(
                DownloadReport(
                    name=f"setup:{step.name}",
                    status="failed",
                    path=str(setup_dir(root, step)),
                    message=message,
                )
            )
    return reports
