"""The weights catalogue and its download / verify / set-up code, on real folders.

The Hugging Face Hub is the network boundary here. weights.py crosses it with
`huggingface_hub.snapshot_download` and, for a repository the catalogue does not pin,
`HfApi.model_info` (the default branch's commit); those two are the only fakes (`FakeHub`; the
real `HfApi` object and its real `ModelInfo` result are used around the HTTP call). It writes the
allowed files of a fake repository listing into `local_dir`, with the per-file download metadata
(`.cache/huggingface/download/<path>.metadata`: commit, etag, timestamp) that the real function
leaves there. Everything else (manifests, hashing, verification, links) runs for real on tmp_path.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from talkstack.engines.gpu import weights
from talkstack.engines.gpu.weights import (
    CATALOGUE,
    MANIFEST,
    MODEL_IDS,
    MULTITALK_CKPT,
    DownloadReport,
    IncompleteDownloadError,
    UnpinnedError,
    WeightSpec,
    download,
    local_dir,
    spec_for_repo,
    specs_for,
    verify,
)

WAN = spec_for_repo("Wan-AI/Wan2.1-I2V-14B-480P")
WAV2VEC = spec_for_repo("TencentGameMate/chinese-wav2vec2-base")
MULTITALK = spec_for_repo("MeiGen-AI/MeiGen-MultiTalk")
LORA = spec_for_repo("lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v")
INFINITETALK = spec_for_repo("MeiGen-AI/InfiniteTalk")
CHATTERBOX = spec_for_repo("ResembleAI/chatterbox")

MAIN_COMMIT = "c0ffee" * 6 + "c0ff"
"""What the fake Hub's main branch resolves to (for the unpinned MultiTalk repository)."""
SHARDS = (
    "diffusion_pytorch_model-00001-of-00002.safetensors",
    "diffusion_pytorch_model-00002-of-00002.safetensors",
)


def _index(weight_map: dict[str, str]) -> bytes:
    return json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}).encode()


def wan_files() -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "i2v", "dim": 5120}',
        "diffusion_pytorch_model.safetensors.index.json": _index(
            {"blocks.0.w": SHARDS[0], "blocks.1.w": SHARDS[1]}
        ),
        SHARDS[0]: b"A" * 96,
        SHARDS[1]: b"B" * 80,
        "models_t5_umt5-xxl-enc-bf16.pth": b"t5" * 40,
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth": b"clip" * 20,
        "Wan2.1_VAE.pth": b"vae" * 30,
        "google/umt5-xxl/tokenizer.json": b'{"t5": 1}',
        "xlm-roberta-large/tokenizer.json": b'{"xlmr": 1}',
        "README.md": b"# Wan2.1",  # not in allow_patterns
        "examples/i2v_input.JPG": b"jpeg",  # not in allow_patterns
    }


def multitalk_files() -> dict[str, bytes]:
    weight_map = {"blocks.0.w": SHARDS[0], "blocks.1.w": SHARDS[1], "audio_proj.w": "multitalk.safetensors"}
    return {
        "multitalk.safetensors": b"M" * 72,
        "diffusion_pytorch_model.safetensors.index.json": _index(weight_map),
        "quant_models/dit_model_int8.safetensors": b"int8" * 50,  # not in allow_patterns
    }


@dataclass
class FakeRepo:
    commit: str
    files: dict[str, bytes]


@dataclass
class FakeHub:
    """The Hugging Face Hub behind `snapshot_download`, for a few repositories."""

    repos: dict[str, FakeRepo]
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_after: int | None = None
    """Raise a connection error after writing this many files (an interrupted download)."""

    def snapshot_download(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        allow_patterns: list[str] | None = None,
        local_dir: str | Path,
        token: str | None = None,
        **_: Any,
    ) -> str:
        self.calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        repo = self.repos[repo_id]
        if revision not in (None, "main", repo.commit):
            raise ValueError(f"fake hub: {repo_id} has no revision {revision}")
        written = 0
        for path, data in sorted(repo.files.items()):
            if allow_patterns is not None and not any(fnmatch.fnmatch(path, p) for p in allow_patterns):
                continue
            if self.fail_after is not None and written >= self.fail_after:
                raise ConnectionError("fake hub: connection reset by peer")
            target = Path(local_dir, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            meta = Path(local_dir, ".cache", "huggingface", "download", f"{path}.metadata")
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(f"{repo.commit}\n{hashlib.sha256(data).hexdigest()}\n{time.time()}\n")
            written += 1
        return str(local_dir)

    def model_info(self, api: Any, repo_id: str, *, revision: str | None = None, **_: Any) -> Any:
        from huggingface_hub.hf_api import ModelInfo

        self.calls.append({"repo_id": repo_id, "revision": revision, "api": "model_info"})
        return ModelInfo(id=repo_id, sha=self.repos[repo_id].commit)

    def count(self, repo_id: str) -> int:
        return sum(1 for call in self.calls if call["repo_id"] == repo_id)


def _repo(spec: WeightSpec, files: dict[str, bytes]) -> FakeRepo:
    return FakeRepo(spec.revision or MAIN_COMMIT, files)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(
        {
            WAN.repo_id: _repo(WAN, wan_files()),
            WAV2VEC.repo_id: _repo(
                WAV2VEC,
                {
                    "config.json": b'{"hidden_size": 768}',
                    "preprocessor_config.json": b'{"sampling_rate": 16000}',
                    "model.safetensors": b"W" * 64,
                    "pytorch_model.bin": b"bin" * 20,  # not in allow_patterns
                },
            ),
            MULTITALK.repo_id: _repo(MULTITALK, multitalk_files()),
            LORA.repo_id: _repo(LORA, {LORA.entry or "": b"L" * 40, "loras/other_rank32.safetensors": b"x"}),
            INFINITETALK.repo_id: _repo(
                INFINITETALK,
                {"single/infinitetalk.safetensors": b"S" * 50, "multi/infinitetalk.safetensors": b"U" * 50},
            ),
            CHATTERBOX.repo_id: _repo(
                CHATTERBOX,
                {
                    "ve.safetensors": b"ve" * 10,
                    "t3_cfg.safetensors": b"t3" * 60,
                    "s3gen.safetensors": b"s3" * 50,
                    "tokenizer.json": b'{"vocab": {}}',
                    "conds.pt": b"conds",
                    "ve.pt": b"vept" * 5,
                    "t3_mtl23ls_v2.safetensors": b"mtl2" * 30,
                    "s3gen.pt": b"s3pt" * 25,
                    "grapheme_mtl_merged_expanded_v1.json": b'{"g": 1}',
                    "Cangjie5_TC.json": b'{"c": 1}',
                    "README.md": b"# chatterbox",  # not in allow_patterns
                },
            ),
        }
    )
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(
        huggingface_hub.HfApi, "model_info", lambda api, *a, **k: fake.model_info(api, *a, **k)
    )
    return fake


def quiet(_: str) -> None:
    pass


# --- the catalogue --------------------------------------------------------------------------


def test_multitalk_and_infinitetalk_share_the_wan_base_and_wav2vec2_once() -> None:
    repos = [spec.repo_id for spec in specs_for(["multitalk", "infinitetalk"])]

    assert repos.count(WAN.repo_id) == 1
    assert repos.count(WAV2VEC.repo_id) == 1
    assert repos.count(LORA.repo_id) == 1
    assert set(repos) == {WAN.repo_id, WAV2VEC.repo_id, MULTITALK.repo_id, LORA.repo_id, INFINITETALK.repo_id}
    assert [
        s.repo_id for s in specs_for(["infinitetalk", "multitalk", "multitalk"])
    ] == repos  # catalogue order


def test_every_model_id_has_weights_and_unknown_ids_are_rejected() -> None:
    for model in MODEL_IDS:
        assert specs_for([model]), model
    assert {m for s in CATALOGUE for m in s.model_ids} == set(MODEL_IDS)
    with pytest.raises(ValueError, match="unknown model id"):
        specs_for(["multitalk", "sora"])


def test_resolve_models_reads_all_or_a_comma_list() -> None:
    assert weights.resolve_models("all") == list(MODEL_IDS)
    assert weights.resolve_models(" multitalk, chatterbox ,") == ["multitalk", "chatterbox"]
    with pytest.raises(ValueError):
        weights.resolve_models("multitalk,nope")
    with pytest.raises(ValueError):
        weights.resolve_models(" , ")


def test_every_spec_has_a_licence_a_size_and_a_pin_or_an_explicit_unpinned_status() -> None:
    for spec in CATALOGUE:
        assert spec.licence.strip(), spec.repo_id
        assert spec.size_gb > 0, spec.repo_id
        assert spec.source.strip(), spec.repo_id
        assert spec.allow_patterns, spec.repo_id
        if spec.revision is None:
            assert spec.pin_status.startswith("unpinned: ") and len(spec.pin_status) > 20, spec.repo_id
        else:
            assert re.fullmatch(r"[0-9a-f]{40}", spec.revision), spec.repo_id
            assert spec.pin_status == "pinned", spec.repo_id


def test_a_spec_cannot_be_declared_without_a_real_pin_or_a_reason() -> None:
    base = {
        "repo_id": "acme/tiny",
        "source": "test",
        "allow_patterns": ("*.json",),
        "size_gb": 0.1,
        "licence": "MIT",
        "model_ids": ("chatterbox",),
        "role": "x",
    }
    with pytest.raises(ValueError):
        WeightSpec(revision="main", pin_status="pinned", **base)
    with pytest.raises(ValueError):
        WeightSpec(revision="abc123", pin_status="pinned", **base)
    with pytest.raises(ValueError):
        WeightSpec(revision=None, pin_status="pinned", **base)
    WeightSpec(revision=None, pin_status="unpinned: no public pin found", **base)


def test_local_dir_is_org_slash_name_as_the_video_engine_reads_it(tmp_path: Path) -> None:
    from talkstack.engines.gpu.video import WEIGHTS_SUBDIR

    for model, subdir in WEIGHTS_SUBDIR.items():
        spec = spec_for_repo(subdir)
        assert model in spec.model_ids and local_dir(tmp_path, spec) == tmp_path / subdir
    assert local_dir(tmp_path, WAN) == tmp_path / "Wan-AI" / "Wan2.1-I2V-14B-480P"


def test_every_file_the_voice_engine_reads_is_in_the_catalogue() -> None:
    from talkstack.engines.gpu import voice

    engine_reads = {
        "chatterbox": {voice.CHATTERBOX_REPO: voice.CHATTERBOX_FILES + voice.CHATTERBOX_MULTILINGUAL_FILES},
        "indextts2": {voice.INDEXTTS2_REPO: voice.INDEXTTS2_FILES},
    }
    for model, repos in engine_reads.items():
        for repo_id, files in repos.items():
            spec = spec_for_repo(repo_id)
            assert model in spec.model_ids
            for name in files:  # a file, or a folder whose contents a pattern fetches
                assert weights._matches(name, spec.allow_patterns) or any(
                    p.startswith(f"{name}/") for p in spec.allow_patterns
                ), f"{repo_id}: {name} is not fetched"


def test_paths_for_names_each_input_by_role(tmp_path: Path) -> None:
    paths = weights.paths_for("multitalk", tmp_path)

    assert paths["base"] == tmp_path / "Wan-AI" / "Wan2.1-I2V-14B-480P"
    assert paths["ckpt"] == tmp_path / "_talkstack" / MULTITALK_CKPT.name
    assert paths["lora"] == local_dir(tmp_path, LORA) / (LORA.entry or "")
    assert "ckpt" not in weights.paths_for("infinitetalk", tmp_path)


def test_human_size() -> None:
    assert weights.human_size(0) == "0 B"
    assert weights.human_size(999) == "999 B"
    assert weights.human_size(1500) == "1.50 kB"
    assert weights.human_size(739_472_104) == "739 MB"
    assert weights.human_size(9_950_000_000) == "9.95 GB"
    assert weights.human_size(82e9) == "82.0 GB"


# --- download, idempotency, interruption -----------------------------------------------------


def test_download_fetches_only_the_allowed_files_and_writes_a_manifest(hub: FakeHub, tmp_path: Path) -> None:
    report = download(WAN, tmp_path, log=quiet)

    folder = local_dir(tmp_path, WAN)
    assert report.status == "downloaded" and report.ok
    assert report.revision == WAN.revision
    assert hub.calls == [
        {"repo_id": WAN.repo_id, "revision": WAN.revision, "allow_patterns": list(WAN.allow_patterns)}
    ]
    assert (folder / SHARDS[0]).read_bytes() == b"A" * 96
    assert not (folder / "README.md").exists() and not (folder / "examples").exists()

    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["repo_id"], manifest["revision"], manifest["pinned"]) == (
        WAN.repo_id,
        WAN.revision,
        True,
    )
    files = {entry["path"]: entry for entry in manifest["files"]}
    assert set(files) == {p for p in wan_files() if p not in ("README.md", "examples/i2v_input.JPG")}
    assert files["config.json"]["size"] == len(wan_files()["config.json"])
    assert files["config.json"]["sha256"] == hashlib.sha256(wan_files()["config.json"]).hexdigest()
    assert report.files == len(files) and report.bytes == manifest["total_bytes"]
    assert verify(WAN, tmp_path).ok


def test_large_files_are_recorded_by_hub_etag_not_rehashed(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "SMALL_FILE_BYTES", 64)

    download(WAN, tmp_path, log=quiet)

    files = {e["path"]: e for e in json.loads((local_dir(tmp_path, WAN) / MANIFEST).read_text())["files"]}
    assert files[SHARDS[0]]["sha256"] is None  # 96 bytes: "large" here
    assert files[SHARDS[0]]["etag"] == hashlib.sha256(b"A" * 96).hexdigest()
    assert files["config.json"]["sha256"] is not None


def test_a_second_download_is_already_present_and_does_not_touch_the_hub(
    hub: FakeHub, tmp_path: Path
) -> None:
    download(CHATTERBOX, tmp_path, log=quiet)
    said: list[str] = []

    again = download(CHATTERBOX, tmp_path, log=said.append)

    assert again.status == "already present" and again.ok
    assert hub.count(CHATTERBOX.repo_id) == 1
    assert any("already present" in line for line in said)
    assert again.files == 10
    assert not (local_dir(tmp_path, CHATTERBOX) / "README.md").exists()


def test_an_interrupted_download_leaves_no_manifest_and_the_next_run_downloads_again(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.fail_after = 2
    with pytest.raises(ConnectionError):
        download(WAN, tmp_path, log=quiet)

    folder = local_dir(tmp_path, WAN)
    assert any(folder.iterdir())  # some files landed…
    assert not (folder / MANIFEST).exists()  # …but nothing says "complete"
    check = verify(WAN, tmp_path)
    assert not check.ok and "never completed" in check.problems[0]

    hub.fail_after = None
    report = download(WAN, tmp_path, log=quiet)
    assert report.status == "downloaded"
    assert hub.count(WAN.repo_id) == 2
    assert verify(WAN, tmp_path).ok


def test_a_snapshot_missing_a_required_file_is_not_marked_complete(hub: FakeHub, tmp_path: Path) -> None:
    del hub.repos[CHATTERBOX.repo_id].files["conds.pt"]

    with pytest.raises(IncompleteDownloadError, match=r"conds\.pt is missing"):
        download(CHATTERBOX, tmp_path, log=quiet)
    assert not (local_dir(tmp_path, CHATTERBOX) / MANIFEST).exists()


def test_a_shard_index_with_a_missing_shard_is_not_marked_complete(hub: FakeHub, tmp_path: Path) -> None:
    del hub.repos[WAN.repo_id].files[SHARDS[1]]

    with pytest.raises(
        IncompleteDownloadError, match=re.escape("00002-of-00002.safetensors, which is missing")
    ):
        download(WAN, tmp_path, log=quiet)
    assert not (local_dir(tmp_path, WAN) / MANIFEST).exists()


# --- verify ---------------------------------------------------------------------------------


def test_verify_detects_a_missing_or_truncated_file_and_download_repairs_it(
    hub: FakeHub, tmp_path: Path
) -> None:
    download(WAN, tmp_path, log=quiet)
    folder = local_dir(tmp_path, WAN)
    (folder / "Wan2.1_VAE.pth").unlink()
    with (folder / SHARDS[0]).open("r+b") as shard:
        shard.truncate(10)

    check = verify(WAN, tmp_path)

    assert not check.ok
    assert "Wan2.1_VAE.pth is missing" in check.problems
    assert f"{SHARDS[0]} is 10 bytes, expected 96" in check.problems

    report = download(WAN, tmp_path, log=quiet)  # not "already present": it fetches again
    assert report.status == "downloaded" and hub.count(WAN.repo_id) == 2
    assert verify(WAN, tmp_path).ok


def test_verify_detects_an_edited_small_file_of_the_same_size(hub: FakeHub, tmp_path: Path) -> None:
    download(CHATTERBOX, tmp_path, log=quiet)
    (local_dir(tmp_path, CHATTERBOX) / "conds.pt").write_bytes(b"CONDS")

    assert verify(CHATTERBOX, tmp_path).problems == ("conds.pt does not match its sha256",)


def test_verify_rejects_a_folder_downloaded_at_another_revision(hub: FakeHub, tmp_path: Path) -> None:
    download(CHATTERBOX, tmp_path, log=quiet)
    manifest_path = local_dir(tmp_path, CHATTERBOX) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["revision"] = "0" * 40
    manifest_path.write_text(json.dumps(manifest))

    check = verify(CHATTERBOX, tmp_path)

    assert not check.ok and "is not the pinned" in check.problems[0]


# --- unpinned repositories ------------------------------------------------------------------


def test_an_unpinned_repository_is_refused_without_the_allow_flag(hub: FakeHub, tmp_path: Path) -> None:
    assert not MULTITALK.pinned

    with pytest.raises(UnpinnedError, match="refusing to download MeiGen-AI/MeiGen-MultiTalk"):
        download(MULTITALK, tmp_path, log=quiet)

    assert hub.calls == []
    assert not (local_dir(tmp_path, MULTITALK) / MANIFEST).exists()


def test_an_allowed_unpinned_download_warns_loudly_and_records_the_commit_it_got(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = download(MULTITALK, tmp_path, allow_unpinned=True, log=quiet)

    assert "NOT PINNED" in capsys.readouterr().err
    # the default branch is resolved once, then the snapshot is fetched at that commit
    assert [c.get("api") for c in hub.calls] == ["model_info", None]
    assert hub.calls[1]["revision"] == MAIN_COMMIT
    assert (report.status, report.pinned, report.revision) == ("downloaded", False, MAIN_COMMIT)
    manifest = json.loads((local_dir(tmp_path, MULTITALK) / MANIFEST).read_text())
    assert (manifest["pinned"], manifest["revision"]) == (False, MAIN_COMMIT)
    assert not (local_dir(tmp_path, MULTITALK) / "quant_models").exists()
    # the lock on the volume, and the catalogue edit that makes it the pin
    lock = json.loads((local_dir(tmp_path, MULTITALK) / weights.LOCK).read_text())
    assert (lock["repo_id"], lock["revision"]) == (MULTITALK.repo_id, MAIN_COMMIT)
    assert weights.read_lock(MULTITALK, tmp_path) == MAIN_COMMIT
    assert f'revision="{MAIN_COMMIT}", pin_status="pinned"' in report.message
    assert report.message == lock["pin"]


def test_the_pin_line_declares_a_valid_pinned_spec() -> None:
    # What the printed line says to paste must pass the catalogue's own checks.
    line = weights.pin_line(MULTITALK, MAIN_COMMIT)
    fields = dict(re.findall(r'(\w+)="([^"]*)"', line))
    spec = WeightSpec(**{**MULTITALK.__dict__, **fields})
    assert spec.pinned and spec.revision == MAIN_COMMIT


def test_a_locked_repository_stays_on_its_commit_when_the_branch_moves(hub: FakeHub, tmp_path: Path) -> None:
    download(MULTITALK, tmp_path, allow_unpinned=True, log=quiet)
    hub.repos[MULTITALK.repo_id] = FakeRepo("beef" * 10, multitalk_files())  # main moved on

    again = download(MULTITALK, tmp_path, log=quiet)  # no flag needed: the lock is the pin now

    assert (again.status, again.revision) == ("already present", MAIN_COMMIT)
    assert MAIN_COMMIT in again.message
    assert hub.count(MULTITALK.repo_id) == 2  # model_info + one snapshot, nothing since

    (local_dir(tmp_path, MULTITALK) / "multitalk.safetensors").unlink()  # damaged: fetch again…
    hub.repos[MULTITALK.repo_id] = FakeRepo(MAIN_COMMIT, multitalk_files())
    repaired = download(MULTITALK, tmp_path, log=quiet)
    assert (repaired.status, repaired.revision) == ("downloaded", MAIN_COMMIT)
    assert hub.calls[-1] == {
        "repo_id": MULTITALK.repo_id,
        "revision": MAIN_COMMIT,
        "allow_patterns": [*MULTITALK.allow_patterns],
    }  # …at the locked commit, without asking the branch again


def test_an_unpinned_folder_without_a_lock_does_not_verify(hub: FakeHub, tmp_path: Path) -> None:
    download(MULTITALK, tmp_path, allow_unpinned=True, log=quiet)
    (local_dir(tmp_path, MULTITALK) / weights.LOCK).unlink()

    check = verify(MULTITALK, tmp_path)

    assert not check.ok and any(weights.LOCK in p for p in check.problems)


def test_verify_model_checks_pins_and_locks_before_an_engine_loads(hub: FakeHub, tmp_path: Path) -> None:
    assert weights.verify_model("multitalk", tmp_path)  # nothing there

    weights.prepare(["multitalk"], tmp_path, allow_unpinned=True, log=quiet)

    assert weights.verify_model("multitalk", tmp_path) == []
    lock = local_dir(tmp_path, MULTITALK) / weights.LOCK
    lock.write_text(lock.read_text().replace(MAIN_COMMIT, "beef" * 10))  # not what is on disk
    problems = weights.verify_model("multitalk", tmp_path)
    assert any(p.startswith(f"{MULTITALK.repo_id}: manifest revision {MAIN_COMMIT}") for p in problems)


# --- MultiTalk's set-up step ----------------------------------------------------------------


def _download_multitalk_inputs(root: Path) -> None:
    download(WAN, root, log=quiet)
    download(MULTITALK, root, allow_unpinned=True, log=quiet)


def test_multitalk_setup_swaps_the_index_and_links_its_weights_beside_the_base_shards(
    hub: FakeHub, tmp_path: Path
) -> None:
    _download_multitalk_inputs(tmp_path)
    base, multitalk = local_dir(tmp_path, WAN), local_dir(tmp_path, MULTITALK)

    report = weights.run_setup(MULTITALK_CKPT, tmp_path, log=quiet)

    ckpt = weights.setup_dir(tmp_path, MULTITALK_CKPT)
    assert report.status == "set up" and report.ok
    index = "diffusion_pytorch_model.safetensors.index.json"
    assert (ckpt / index).read_bytes() == (multitalk / index).read_bytes()  # MultiTalk's index…
    assert (ckpt / "multitalk.safetensors").resolve() == (multitalk / "multitalk.safetensors").resolve()
    for name in (*SHARDS, "config.json", "Wan2.1_VAE.pth", "google"):  # …over the base's files
        assert (ckpt / name).resolve() == (base / name).resolve(), name
    assert (ckpt / "google" / "umt5-xxl" / "tokenizer.json").read_bytes() == b'{"t5": 1}'
    assert (base / index).read_bytes() == wan_files()[index]  # the shared base is untouched
    assert verify(WAN, tmp_path).ok
    assert weights.verify_setup(MULTITALK_CKPT, tmp_path).ok


def test_multitalk_setup_is_idempotent_and_repairs_a_broken_folder(hub: FakeHub, tmp_path: Path) -> None:
    _download_multitalk_inputs(tmp_path)
    weights.run_setup(MULTITALK_CKPT, tmp_path, log=quiet)
    ckpt = weights.setup_dir(tmp_path, MULTITALK_CKPT)
    marker = (ckpt / weights.SETUP_MARKER).read_text()

    again = weights.run_setup(MULTITALK_CKPT, tmp_path, log=quiet)

    assert again.status == "already present"
    assert (ckpt / weights.SETUP_MARKER).read_text() == marker

    (ckpt / "multitalk.safetensors").unlink()
    broken = weights.verify_setup(MULTITALK_CKPT, tmp_path)
    assert not broken.ok and "multitalk.safetensors does not resolve" in broken.problems
    assert weights.run_setup(MULTITALK_CKPT, tmp_path, log=quiet).status == "set up"
    assert weights.verify_setup(MULTITALK_CKPT, tmp_path).ok


def test_multitalk_setup_waits_for_its_inputs(hub: FakeHub, tmp_path: Path) -> None:
    download(WAN, tmp_path, log=quiet)

    report = weights.run_setup(MULTITALK_CKPT, tmp_path, log=quiet)

    assert report.status == "skipped" and "MeiGen-AI/MeiGen-MultiTalk is not downloaded" in report.message
    assert not weights.setup_dir(tmp_path, MULTITALK_CKPT).exists()


# --- everything a model needs ---------------------------------------------------------------


def test_prepare_lands_the_pinned_repos_even_when_an_unpinned_one_is_refused(
    hub: FakeHub, tmp_path: Path
) -> None:
    seen: list[DownloadReport] = []

    reports = weights.prepare(["multitalk", "infinitetalk"], tmp_path, after_each=seen.append, log=quiet)

    status = {r.name: r.status for r in reports}
    assert status == {
        WAN.repo_id: "downloaded",
        WAV2VEC.repo_id: "downloaded",
        MULTITALK.repo_id: "refused",
        LORA.repo_id: "downloaded",
        INFINITETALK.repo_id: "downloaded",
        f"setup:{MULTITALK_CKPT.name}": "skipped",
    }
    assert seen == reports  # a commit point after every row
    table = weights.format_table([r.to_dict() for r in reports])
    assert "UNPINNED" in table and "refused" in table and "total" in table

    again = weights.prepare(["multitalk"], tmp_path, allow_unpinned=True, log=quiet)

    assert {r.name: r.status for r in again} == {
        WAN.repo_id: "already present",
        WAV2VEC.repo_id: "already present",
        MULTITALK.repo_id: "downloaded",
        LORA.repo_id: "already present",
        f"setup:{MULTITALK_CKPT.name}": "set up",
    }
    assert all(r.ok for r in again)
    assert hub.count(WAN.repo_id) == 1


def test_prepare_reports_a_hub_failure_as_a_row_and_carries_on(hub: FakeHub, tmp_path: Path) -> None:
    del hub.repos[WAV2VEC.repo_id]  # the fake raises KeyError: an unexpected error, not a refusal

    reports = weights.prepare(["infinitetalk"], tmp_path, log=quiet)

    failed = [r for r in reports if not r.ok]
    assert [r.name for r in failed] == [WAV2VEC.repo_id]
    assert failed[0].status == "failed" and "KeyError" in failed[0].message
    assert verify(INFINITETALK, tmp_path).ok
