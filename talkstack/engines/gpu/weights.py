"""The weights catalogue: every Hugging Face repository the GPU engines read, pinned, and the code
that puts them on disk (the `talkstack-weights` Modal Volume, or any local folder) and checks them.

    specs = specs_for(["multitalk", "chatterbox"])      # deduplicated, catalogue order
    for spec in specs:
        download(spec, Path("/weights"))                 # idempotent; refuses unpinned repos
    run_setup(MULTITALK_CKPT, Path("/weights"))          # MultiTalk's index swap, in its own folder
    paths_for("multitalk", Path("/weights"))             # role → path, for the engines

Layout: `<root>/<org>/<name>` per repository (what `local_dir` returns), plus composed folders
under `<root>/_talkstack/` for set-up steps. A repository folder counts as complete only when it
holds `.talkstack-weights.json`, written last and atomically after a successful download: an
interrupted download leaves no manifest, so the next run downloads again (huggingface_hub resumes
the partial files) instead of trusting a half-filled folder.

Every revision is a commit SHA found in public code (the comment above each spec says where): a
moving branch would let the bytes change under a deployed engine. A repository with no pin we
could find has `revision=None` and an `unpinned: …` status, and `download` refuses it unless the
caller explicitly allows unpinned downloads.

Only the standard library is imported here; huggingface_hub is imported inside `download`, so the
catalogue imports anywhere (the CLI, the Lambda package, tests).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

MODEL_IDS: tuple[str, ...] = (
    "multitalk",
    "infinitetalk",
    "chatterbox",
    "indextts2",
    "ltx-video",
    "wan2.2-ti2v-5b",
)
"""The GPU model ids (talkstack/engines/registry.py) that need weights from this catalogue."""

MANIFEST = ".talkstack-weights.json"
SETUP_MARKER = ".talkstack-setup.json"
SETUP_ROOT = "_talkstack"
"""Composed folders live under `<root>/_talkstack/`: Hub org names cannot start with `_`, so this
never collides with a repository folder."""

SMALL_FILE_BYTES = 16 * 1024 * 1024
"""Files up to this size are hashed locally (configs, tokenizers, indexes: cheap, and the ones a
bad edit would break). Large files are checked by size, and their Hub etag (the LFS sha256) is
recorded: hashing ~80 GB on every verify would cost minutes."""

_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

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
# The catalogue
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightSpec:
    """One Hugging Face repository (or the part of it an engine reads) at one commit."""

    repo_id: str
    revision: str | None
    """40-hex commit SHA; None only with an `unpinned: …` pin_status."""
    pin_status: str
    """"pinned", or "unpinned: <why>"."""
    source: str
    """Where the SHA was found (public code), so a reviewer can re-check it."""
    allow_patterns: tuple[str, ...]
    """What to fetch (huggingface_hub fnmatch patterns on repo paths): never the whole repository,
    which for several of these holds tens of GB of quantised or single-file variants we never read."""
    size_gb: float
    """Approximate download size of the allowed files (decimal GB)."""
    licence: str
    model_ids: tuple[str, ...]
    role: str
    """What the engines call this input (see `paths_for`)."""
    required: tuple[str, ...] = ()
    """Files that must be present for the download to count (beyond whatever the patterns matched)."""
    entry: str | None = None
    """The file an engine loads, when the role names one file rather than the folder."""
    check_shard_indexes: bool = True
    """Every `*.safetensors.index.json` fetched must find all its shards beside it. Off for
    MultiTalk, whose index points at the Wan base's shards (that is checked after set-up)."""

    def __post_init__(self) -> None:
        if not _REPO.match(self.repo_id) or ".." in self.repo_id:
            raise ValueError(f"not an <org>/<name> repository id: {self.repo_id!r}")
        if self.revision is None:
            if not self.pin_status.startswith("unpinned: "):
                raise ValueError(f"{self.repo_id}: no revision needs an 'unpinned: <why>' status")
        elif not _SHA.match(self.revision) or self.pin_status != "pinned":
            raise ValueError(f"{self.repo_id}: revision must be a 40-hex commit with pin_status 'pinned'")
        if not self.allow_patterns or self.size_gb <= 0 or not self.licence or not self.source:
            raise ValueError(f"{self.repo_id}: allow_patterns, size_gb, licence and source are required")
        unknown = set(self.model_ids) - set(MODEL_IDS)
        if not self.model_ids or unknown:
            raise ValueError(f"{self.repo_id}: unknown model ids {sorted(unknown)}")

    @property
    def pinned(self) -> bool:
        return self.revision is not None


@dataclass(frozen=True)
class SetupStep:
    """A folder composed from downloaded repositories: every top-level entry of `base_repo` linked
    in, with `overlays` (repo, path) linked over the base's entries of the same name. Links, not
    copies: the base is ~80 GB and is shared with other models."""

    name: str
    model_ids: tuple[str, ...]
    role: str
    base_repo: str
    overlays: tuple[tuple[str, str], ...]
    why: str


_WAN21_REPO = "Wan-AI/Wan2.1-I2V-14B-480P"
_MULTITALK_REPO = "MeiGen-AI/MeiGen-MultiTalk"
_DIFFUSERS_REQUIRED = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "transformer/config.json",
    "vae/config.json",
)

CATALOGUE: tuple[WeightSpec, ...] = (
    # --- Avatar: MultiTalk / InfiniteTalk on the Wan2.1 I2V 14B base -------------------------
    WeightSpec(
        repo_id=_WAN21_REPO,
        # SHA: the HF cache snapshot path `models--Wan-AI--Wan2.1-I2V-14B-480P/snapshots/6b73f84e…`
        # in several independent public repositories (training/inference scripts), and pinned in a public
        # InfiniteTalk trainer's downloader and an InfiniteTalk install matrix with this file list.
        revision="6b73f84e66371cdfe870c72acd6826e1d61cf279",
        pin_status="pinned",
        source="public code: HF cache snapshot paths + pinned downloaders (InfiniteTalk trainers)",
        # The original (non-diffusers) layout MultiTalk/InfiniteTalk read; skips examples/assets.
        allow_patterns=(
            "config.json",
            "diffusion_pytorch_model-*.safetensors",
            "diffusion_pytorch_model.safetensors.index.json",
            "models_t5_umt5-xxl-enc-bf16.pth",
            "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
            "Wan2.1_VAE.pth",
            "google/umt5-xxl/*",
            "xlm-roberta-large/*",
        ),
        size_gb=82.0,  # 7 fp32 DiT shards ~66 GB + umt5-xxl ~11 GB + CLIP ~4.8 GB + VAE 0.5 GB
        licence="Apache-2.0",
        model_ids=("multitalk", "infinitetalk"),
        role="base",
        required=(
            "config.json",
            "diffusion_pytorch_model.safetensors.index.json",
            "models_t5_umt5-xxl-enc-bf16.pth",
            "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
            "Wan2.1_VAE.pth",
        ),
    ),
    WeightSpec(
        repo_id="TencentGameMate/chinese-wav2vec2-base",
        # SHA: head of `refs/pr/1` (the PR that adds model.safetensors), which MultiTalk's and
        # InfiniteTalk's READMEs download by branch name; found pinned as a commit in one public
        # InfiniteTalk trainer downloader ("pinned to a commit rather than a movable refs/pr/1").
        # Fallback if it ever fails to resolve: main @ 3991242c806928916fff4a8c0e4f76acf661b743 (two
        # public sources) with pytorch_model.bin, which transformers only loads on torch >= 2.6.
        revision="5f7a6cfdfc5440ec78748f79a9dd66f077c2b463",
        pin_status="pinned",
        source="public code: InfiniteTalk trainer downloader pinning refs/pr/1 (single source)",
        allow_patterns=("config.json", "preprocessor_config.json", "model.safetensors"),
        size_gb=0.38,
        licence="MIT",
        model_ids=("multitalk", "infinitetalk"),
        role="wav2vec",
        required=("config.json", "preprocessor_config.json", "model.safetensors"),
    ),
    WeightSpec(
        repo_id=_MULTITALK_REPO,
        revision=None,
        pin_status=(
            "unpinned: no public code pins MeiGen-AI/MeiGen-MultiTalk to a commit (searched HF cache "
            "snapshot paths, resolve/<sha> URLs and revision= arguments); pin it from "
            "`huggingface_hub.HfApi().model_info('MeiGen-AI/MeiGen-MultiTalk').sha` on a networked machine"
        ),
        source="none found",
        # Only the audio-condition weights and the index that wires them into the Wan DiT; the
        # repo's quant_models/ (int8/fp8, ~30 GB) are not used.
        allow_patterns=("multitalk.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
        size_gb=9.95,
        licence="Apache-2.0",
        model_ids=("multitalk",),
        role="multitalk",
        required=("multitalk.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
        check_shard_indexes=False,  # its index names the Wan base's shards; checked after set-up
    ),
    WeightSpec(
        repo_id="lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v",
        # SHA: pinned in several public ComfyUI/SCAIL installers, one with the file's size
        # (739,472,104 bytes) and sha256; also in a public InfiniteTalk deployment table.
        revision="fef288b326f4fed6d2983b9800c35363da31fcfe",
        pin_status="pinned",
        source="public code: ComfyUI/SCAIL installers + an InfiniteTalk deployment table",
        # The 4-step, CFG-distilled I2V LoRA (lightx2v's own release; MultiTalk's README links
        # Kijai's T2V rank-32 extraction of the same distillation). Turbo: 4 steps, text guide 1.
        allow_patterns=("loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors",),
        size_gb=0.74,
        licence="Apache-2.0",
        model_ids=("multitalk", "infinitetalk"),
        role="lora",
        required=("loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors",),
        entry="loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors",
    ),
    WeightSpec(
        repo_id="MeiGen-AI/InfiniteTalk",
        # SHA: pinned in several public projects (an InfiniteTalk install matrix, a pinned trainer
        # downloader, an avatar-model registry, a README link /blob/d59847eb…/README.md).
        revision="d59847ebdacf19245bfca3fb23311c0cada8378a",
        pin_status="pinned",
        source="public code: InfiniteTalk install matrices, trainer downloader, model registries",
        # single/ and multi/ audio-condition weights; not quant_models/ or comfyui/.
        allow_patterns=("single/infinitetalk.safetensors", "multi/infinitetalk.safetensors"),
        size_gb=19.9,
        licence="Apache-2.0",
        model_ids=("infinitetalk",),
        role="infinitetalk",
        required=("single/infinitetalk.safetensors", "multi/infinitetalk.safetensors"),
    ),
    # --- Voice -------------------------------------------------------------------------------
    WeightSpec(
        repo_id="ResembleAI/chatterbox",
        # SHA: HF cache snapshot path `models--ResembleAI--chatterbox/snapshots/5bb1f6ee…` in several
        # public projects (ve.safetensors loaders, tests); public model tables list the English set
        # and the multilingual set (ve.pt, t3_mtl23ls_v3, s3gen.pt, grapheme…, Cangjie5_TC) at 5bb1f6ee.
        revision="5bb1f6ee58e50c3b8d408bc82a6d3740c2db6e18",
        pin_status="pinned",
        source="public code: HF cache snapshot paths + chatterbox model tables (English and multilingual)",
        # What ChatterboxTTS.from_local (English) and ChatterboxMultilingualTTS.from_local read. Both
        # multilingual T3 generations are allowed but not required: chatterbox-tts 0.1.x loads _v2,
        # newer code _v3, and only _v3 is attested at this commit by the sources above.
        allow_patterns=(
            "ve.safetensors",
            "t3_cfg.safetensors",
            "s3gen.safetensors",
            "tokenizer.json",
            "conds.pt",
            "ve.pt",
            "t3_mtl23ls_v*.safetensors",
            "s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "Cangjie5_TC.json",
        ),
        size_gb=8.0,  # English set ~3.0 GB + multilingual set ~3.0 GB + a second T3 generation ~2 GB
        licence="MIT",
        model_ids=("chatterbox",),
        role="checkpoint",
        required=(
            "ve.safetensors",
            "t3_cfg.safetensors",
            "s3gen.safetensors",
            "tokenizer.json",
            "conds.pt",
            "ve.pt",
            "s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "Cangjie5_TC.json",
        ),
    ),
    WeightSpec(
        repo_id="IndexTeam/IndexTTS-2",
        # SHA: HF cache snapshot paths `models--IndexTeam--IndexTTS-2/snapshots/740dcaff…` in public
        # projects, and a public pinned IndexTTS-2 downloader that pins the four repos below with it.
        revision="740dcaff396282ffb241903d150ac011cd4b1ede",
        pin_status="pinned",
        source="public code: HF cache snapshot paths + a pinned IndexTTS-2 downloader",
        allow_patterns=("config.yaml", "*.pth", "*.pt", "bpe.model", "qwen0.6bemo4-merge/*"),
        size_gb=5.8,  # gpt.pth 3.3 GB + s2mel.pth 1.2 GB + qwen0.6bemo4-merge ~1.2 GB + small files
        licence="bilibili IndexTTS model licence (custom; see LICENSE in the repository)",
        model_ids=("indextts2",),
        role="checkpoints",
        required=("config.yaml", "gpt.pth", "s2mel.pth", "bpe.model", "wav2vec2bert_stats.pt"),
    ),
    # IndexTTS-2 fetches these four by name at load time (hf_hub_download / from_pretrained); pinned
    # here so a container never reaches the Hub and never gets different bytes. SHAs: the same
    # public pinned downloader, each corroborated by several other public pin tables.
    WeightSpec(
        repo_id="facebook/w2v-bert-2.0",
        revision="da985ba0987f70aaeb84a80f2851cfac8c697a7b",
        pin_status="pinned",
        source="public code: pinned IndexTTS-2 downloaders and model pin tables (10+ files)",
        allow_patterns=("config.json", "preprocessor_config.json", "model.safetensors"),
        size_gb=2.32,
        licence="MIT",
        model_ids=("indextts2",),
        role="w2v-bert",
        required=("config.json", "preprocessor_config.json", "model.safetensors"),
    ),
    WeightSpec(
        repo_id="amphion/MaskGCT",
        revision="265c6cef07625665d0c28d2faafb1415562379dc",
        pin_status="pinned",
        source="public code: pinned IndexTTS-2 downloader + HF cache snapshot paths",
        allow_patterns=("semantic_codec/model.safetensors",),
        size_gb=0.18,
        # Not re-checked against the live card here: confirm before commercial use of indextts2.
        licence="CC-BY-NC-4.0 (MaskGCT model card; non-commercial)",
        model_ids=("indextts2",),
        role="semantic-codec",
        required=("semantic_codec/model.safetensors",),
        entry="semantic_codec/model.safetensors",
    ),
    WeightSpec(
        repo_id="funasr/campplus",
        revision="e4b6ede7ce16997aff4ae69fbca1f0175e2afede",
        pin_status="pinned",
        source="public code: pinned IndexTTS-2 / Seed-VC downloaders (10+ files)",
        allow_patterns=("campplus_cn_common.bin",),
        size_gb=0.03,
        licence="Apache-2.0",
        model_ids=("indextts2",),
        role="campplus",
        required=("campplus_cn_common.bin",),
        entry="campplus_cn_common.bin",
    ),
    WeightSpec(
        repo_id="nvidia/bigvgan_v2_22khz_80band_256x",
        revision="633ff708ed5b74903e86ff1298cf4a98e921c513",
        pin_status="pinned",
        source="public code: pinned IndexTTS-2 downloaders and model pin tables (10+ files)",
        allow_patterns=("config.json", "bigvgan_generator.pt"),
        size_gb=0.45,
        licence="MIT",
        model_ids=("indextts2",),
        role="bigvgan",
        required=("config.json", "bigvgan_generator.pt"),
    ),
    # --- Text-to-video (diffusers format) --------------------------------------------------------
    WeightSpec(
        repo_id="Lightricks/LTX-Video-0.9.7-distilled",
        # SHA: pinned in a public project's LTX download/licence gate (several files of that one
        # project). The video engine reads this repository (talkstack/engines/gpu/video.py).
        # 0.9.8-13B-distilled alternative: 7c64400e1861cc0d7b98d570a1926d5408ec60cd (many projects).
        revision="057509edea1493cae5e62e9d8f780ebda3fb4333",
        pin_status="pinned",
        source="public code: one project's pinned LTX-Video-0.9.7-distilled bake/download code",
        # Component folders only, vae/ by name: LTX-Video-0.9.8-13B-distilled (at 7c64400) also
        # publishes copies of its transformer and text encoder under vae/, which local_dir would
        # store a second time (~45 GB); naming the VAE files keeps that out whatever this repo holds.
        allow_patterns=(
            "model_index.json",
            "scheduler/*",
            "text_encoder/*",
            "tokenizer/*",
            "transformer/*",
            "vae/config.json",
            "vae/diffusion_pytorch_model*",
        ),
        size_gb=47.0,  # T5-XXL encoder 19.0 GB (measured by that project) + 13B DiT bf16 + VAE
        licence="LTX-Video open-weights licence at the pinned revision (HF tag 'other'; read it first)",
        model_ids=("ltx-video",),
        role="pipeline",
        required=_DIFFUSERS_REQUIRED,
    ),
    WeightSpec(
        repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        # SHA: HF cache snapshot path `models--Wan-AI--Wan2.2-TI2V-5B-Diffusers/snapshots/b8fff731…`
        # in several independent public repositories, and a public model table with these patterns.
        revision="b8fff7315c768468a5333511427288870b2e9635",
        pin_status="pinned",
        source="public code: HF cache snapshot paths in several repositories + a model table",
        allow_patterns=(
            "model_index.json",
            "scheduler/*",
            "text_encoder/*",
            "tokenizer/*",
            "transformer/*",
            "vae/*",
        ),
        size_gb=31.9,
        licence="Apache-2.0",
        model_ids=("wan2.2-ti2v-5b",),
        role="pipeline",
        required=_DIFFUSERS_REQUIRED,
    ),
)

MULTITALK_CKPT = SetupStep(
    name="multitalk-Wan2.1-I2V-14B-480P",
    model_ids=("multitalk",),
    role="ckpt",
    base_repo=_WAN21_REPO,
    overlays=(
        (_MULTITALK_REPO, "diffusion_pytorch_model.safetensors.index.json"),
        (_MULTITALK_REPO, "multitalk.safetensors"),
    ),
    why=(
        "MultiTalk's README: replace the base's diffusion_pytorch_model.safetensors.index.json by "
        "MultiTalk's and link multitalk.safetensors beside the shards. Done in a separate folder so the "
        "shared base stays pristine for InfiniteTalk and its manifest keeps verifying."
    ),
)

SETUP_STEPS: tuple[SetupStep, ...] = (MULTITALK_CKPT,)


def _check_catalogue() -> None:
    repos = [s.repo_id for s in CATALOGUE]
    if len(repos) != len(set(repos)):
        raise ValueError("a repository appears twice in the catalogue")
    for model in MODEL_IDS:
        roles = [s.role for s in CATALOGUE if model in s.model_ids]
        roles += [st.role for st in SETUP_STEPS if model in st.model_ids]
        if not roles or len(roles) != len(set(roles)):
            raise ValueError(f"{model}: needs at least one spec and unique roles, got {roles}")
    for step in SETUP_STEPS:
        for repo in (step.base_repo, *(r for r, _ in step.overlays)):
            if repo not in repos:
                raise ValueError(f"set-up {step.name}: {repo} is not in the catalogue")


_check_catalogue()


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


def _build_manifest(spec: WeightSpec, folder: Path) -> dict[str, Any]:
    """List what the download put in `folder` for this spec, or raise IncompleteDownloadError."""
    candidates = [rel for rel in _walk(folder) if _matches(rel, spec.allow_patterns)]
    meta = {rel: _hub_metadata(folder, rel) for rel in candidates}
    revision = spec.revision
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


def verify(spec: WeightSpec, root: Path | str) -> VerifyReport:
    """Is `spec` completely on disk? Every manifest file at its recorded size (small files also by
    sha256), every required file present, every shard index satisfied, and the pinned revision."""
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
    if spec.pinned and revision != spec.revision:
        problems.append(f"manifest revision {revision} is not the pinned {spec.revision}")
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
        elif entry.get("sha256") and _sha256(path) != entry["sha256"]:
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
    afterwards, and whatever huggingface_hub raises (network, revision not found)."""
    folder = local_dir(root, spec)
    present = verify(spec, root)
    if present.ok:
        if not spec.pinned:
            _warn_unpinned(spec, log)
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
        )
    if not spec.pinned:
        if not allow_unpinned:
            raise UnpinnedError(f"refusing to download {spec.repo_id}: {spec.pin_status} (or allow unpinned)")
        _warn_unpinned(spec, log)

    from huggingface_hub import snapshot_download  # the network boundary; imported only here

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    # A stale manifest (other pin, damaged files) must not outlive a download that may stop halfway.
    (folder / MANIFEST).unlink(missing_ok=True)
    log(f"{spec.repo_id}: downloading @ {spec.revision or 'main (UNPINNED)'} (~{spec.size_gb:g} GB)")
    snapshot_download(
        repo_id=spec.repo_id,
        revision=spec.revision,
        allow_patterns=list(spec.allow_patterns),
        local_dir=str(folder),
        token=token,
    )
    manifest = _build_manifest(spec, folder)
    _write_json_atomically(folder / MANIFEST, manifest)
    check = verify(spec, root)
    if not check.ok:  # e.g. a file changed between listing and hashing
        (folder / MANIFEST).unlink(missing_ok=True)
        raise WeightsError(f"{spec.repo_id}: does not verify after download: {'; '.join(check.problems)}")
    seconds = time.monotonic() - started
    log(f"{spec.repo_id}: downloaded {check.files} files, {human_size(check.bytes)} in {seconds:.0f} s")
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
