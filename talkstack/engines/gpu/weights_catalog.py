"""The weights catalogue as data: every Hugging Face repository the GPU engines read, pinned, with
what to fetch from it, and the folders composed from those downloads. weights.py puts these
entries on disk and checks them; this module only declares them (and rejects, at import, a
catalogue that is inconsistent), so a new model or a re-pin is an edit here alone.

Every revision is a commit SHA found in public code (the comment above each spec says where): a
moving branch would let the bytes change under a deployed engine. A repository with no pin we
could find has `revision=None` and an `unpinned: …` status, and the downloader refuses it unless
the caller explicitly allows unpinned downloads.

A Python module rather than a data file: it ships wherever the package's `*.py` files do (the
Lambda bundle, the Modal image) and the entries are typed and checked by the same code that
declares them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_IDS: tuple[str, ...] = (
    "multitalk",
    "infinitetalk",
    "chatterbox",
    "indextts2",
    "ltx-video",
    "wan2.2-ti2v-5b",
    "vitmatte",
)
"""The GPU model ids (talkstack/engines/registry.py) that need weights from this catalogue."""


_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    """What the engines call this input (see `weights.paths_for`)."""
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
            "snapshot paths, resolve/<sha> URLs and revision= arguments). `modal run -m "
            "modal_workers.weights` fetches it at the commit its default branch resolves to, locks that "
            "commit on the volume (.talkstack-revision.json) and prints the line that pins it here"
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
        # What chatterbox-tts 0.1.7 reads, all required: the English set (tts.py, from_pretrained's
        # list) and the multilingual set (mtl_tts.py, from_pretrained's allow_patterns). 0.1.7 loads
        # the multilingual T3 `_v2` by that exact name (newer chatterbox code can opt into `_v3`, which
        # the engine never reads, so it is not fetched). _v2 at this commit: a public downloader of
        # "Multilingual 0.1.7" fetches exactly this list at 5bb1f6ee.
        allow_patterns=(
            "ve.safetensors",
            "t3_cfg.safetensors",
            "s3gen.safetensors",
            "tokenizer.json",
            "conds.pt",
            "ve.pt",
            "t3_mtl23ls_v2.safetensors",
            "s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "Cangjie5_TC.json",
        ),
        size_gb=6.2,  # English set ~3.0 GB + multilingual set ~3.2 GB
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
            "t3_mtl23ls_v2.safetensors",
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
        # Everything IndexTTS2.__init__ opens (infer_v2.py at ee40fa7d; the same list as its CLI's
        # REQUIRED_MODEL_FILES / REQUIRED_MODEL_DIRS, cli_v2.py:22-33): feat1/feat2 are the speaker
        # and emotion matrices, qwen0.6bemo4-merge the QwenEmotion model it loads by default.
        required=(
            "config.yaml",
            "gpt.pth",
            "s2mel.pth",
            "bpe.model",
            "wav2vec2bert_stats.pt",
            "feat1.pt",
            "feat2.pt",
            "qwen0.6bemo4-merge/config.json",
            "qwen0.6bemo4-merge/model.safetensors",
            "qwen0.6bemo4-merge/tokenizer.json",
            "qwen0.6bemo4-merge/tokenizer_config.json",
        ),
    ),
    # Without `aux_paths`, IndexTTS2 fetches these four from the Hub's `main` at every cold start
    # (indextts/utils/model_download.py, ensure_models_available); the voice engine passes these
    # pinned folders instead (voice.INDEXTTS2_AUX_ROLES) and loads with the Hub offline. SHAs: the
    # same public pinned downloader, each corroborated by several other public pin tables.
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
        repo_id="Lightricks/ltxv-spatial-upscaler-0.9.7",
        # SHA: HF cache snapshot path `models--Lightricks--ltxv-spatial-upscaler-0.9.7/snapshots/c96c168…`
        # in a public LTX inference script (which pairs it with LTX-Video-0.9.7-dev), and the same SHA as
        # an upsampler revision constant in two other public projects. The upsampler diffusers' LTX-Video
        # docs pair with LTX-Video-0.9.7-distilled (two-stage recipe, talkstack/engines/gpu/video.py).
        revision="c96c168c2bd8bbc82c9fe8259e5f89f8b2ea293f",
        pin_status="pinned",
        source="public code: an HF cache snapshot path + upsampler revision constants in two projects",
        # The repository is a whole LTXLatentUpsamplePipeline (diffusers' convert_ltx_to_diffusers.py
        # saves it with a copy of the VAE); the engine reads only the upsampler and reuses the
        # generating pipeline's VAE, so the copy is not fetched.
        allow_patterns=(
            "model_index.json",
            "latent_upsampler/config.json",
            "latent_upsampler/diffusion_pytorch_model*",
        ),
        size_gb=0.5,  # the same weights as LTX-Video's single-file ltxv-spatial-upscaler-0.9.7 (505 MB)
        licence="LTX-Video open-weights licence at the pinned revision (HF tag 'other'; read it first)",
        model_ids=("ltx-video",),
        role="upsampler",
        required=("latent_upsampler/config.json",),
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
    # --- Person matting ----------------------------------------------------------------------------
    WeightSpec(
        repo_id="hustvl/vitmatte-small-composition-1k",
        # SHA: the commit a public Hugging Face commit-history page of this repository is rendered at
        # (huggingface.co/hustvl/vitmatte-small-composition-1k/commits/5322261…/README.md).
        revision="53222614392e8bd24ed804fbd2f9a43c46ac3850",
        pin_status="pinned",
        source="public page: the repository's HF commit history at that revision",
        # model.safetensors is at this revision (public code pins its SHA-256 there); from_pretrained
        # reads it before pytorch_model.bin, so the pickle is never fetched.
        allow_patterns=("config.json", "preprocessor_config.json", "model.safetensors"),
        size_gb=0.11,  # 25.8 M parameters (fp32)
        licence="Apache-2.0 (model card); trained on Composition-1k, whose images are research-only",
        model_ids=("vitmatte",),
        role="model",
        required=("config.json", "model.safetensors"),
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
