"""The `talkstack-avatar` Modal app as declared: imported with no Modal credentials and read back
through tests/support/modal_introspect.py (nothing is deployed or run)."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from talkstack.contract.request import AvatarOptions, VideoOptions
from talkstack.engines.registry import modal_parameters, modal_target
from tests.support.modal_introspect import _impl, declared, method_names
from tests.unit.test_modal_images import dockerfile, installed

GPU_CLASSES = {"MultiTalk": "multitalk", "InfiniteTalk": "infinitetalk"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TALKSTACK_AVATAR_GPU"):
        monkeypatch.delenv(name, raising=False)
    sys.modules.pop("modal_workers.avatar", None)
    yield importlib.import_module("modal_workers.avatar")
    sys.modules.pop("modal_workers.avatar", None)


@pytest.mark.parametrize("cls_name", GPU_CLASSES)
def test_gpu_classes_serve_their_model_on_a_gpu_with_no_credentials(app_module, cls_name):
    # Time limits: test_modal_apps_serve_the_pipeline.py (against the pipeline's plan); host RAM:
    # below (against the loaders' peaks); the GPU setting: the subprocess test below.
    fn = declared(app_module.app, cls_name)
    assert fn.gpu  # a GPU class (which one is the deploy-time setting)
    assert fn.secrets == []  # no credentials: every transfer is a pre-signed URL
    assert method_names(app_module.app, cls_name) == {"run", "smoke"}
    model = GPU_CLASSES[cls_name]
    assert modal_target(model) == ("talkstack-avatar", cls_name)
    assert getattr(app_module, cls_name)._get_user_cls().model == model


@pytest.mark.parametrize("cls_name", GPU_CLASSES)
def test_turbo_is_a_modal_class_parameter_that_reaches_the_container(app_module, cls_name):
    """The dispatcher's `Cls.from_name(...)(turbo=…).run.spawn(task)`, through Modal's own code: the
    parameter schema `modal deploy` registers for the class, the client-side check and encoding of
    the spawn's parameters, and the container's decoding and construction of the instance."""
    from modal._runtime.user_code_imports import get_user_class_instance
    from modal._serialization import (
        apply_defaults,
        deserialize_params,
        serialize_proto_params,
        validate_parameter_values,
    )
    from modal._utils.async_utils import synchronizer
    from modal.cls import _get_class_constructor_signature
    from modal_proto import api_pb2

    model = GPU_CLASSES[cls_name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        service = app_module.app.registered_functions[f"{cls_name}.*"]
    info = _impl(service)._source_info.class_parameter_info()  # sent with the class on deploy
    assert info.format == api_pb2.ClassParameterInfo.PARAM_SERIALIZATION_FORMAT_PROTO
    assert [(p.name, p.type, p.has_default, p.bool_default) for p in info.schema] == [
        ("turbo", api_pb2.PARAM_TYPE_BOOL, True, False)
    ]
    user_cls = getattr(app_module, cls_name)._get_user_cls()
    assert list(_get_class_constructor_signature(user_cls).parameters) == ["turbo"]

    for turbo in (True, False):
        params = modal_parameters(model, AvatarOptions(model=model, turbo=turbo))  # what dispatch spawns
        sent = apply_defaults(params, info.schema)
        validate_parameter_values(sent, info.schema)  # the client's check before FunctionBindParams
        definition = api_pb2.Function(class_parameter_info=info)
        args, kwargs = deserialize_params(serialize_proto_params(sent), definition, None)  # type: ignore[arg-type]
        instance = get_user_class_instance(
            synchronizer._translate_in(getattr(app_module, cls_name)), args, kwargs
        )
        assert instance.turbo is turbo and instance.model == model
    assert modal_parameters("ltx-video", VideoOptions()) == {}


# The official loaders' host-RAM peaks, recomputed from the model configs with the real classes
# (built on the meta device: no memory, no weights).
#   MultiTalk (wan/multitalk.py, MultiTalkPipeline.__init__ at c1ad840): the umt5-xxl encoder is
#     built on the CPU in bf16 and stays there until generate(); `WanModel.from_pretrained` loads the
#     DiT + audio adapter in the checkpoint's dtype, fp32, before casting to bf16.
#   InfiniteTalk (wan/multitalk.py, InfiniteTalkPipeline.__init__ at 0107cd9): the same encoder; the
#     DiT is built in fp32 (outside the unused init_empty_weights context) and cast to bf16, then all
#     seven fp32 base shards and single/infinitetalk.safetensors are merged into one state dict
#     before load_state_dict, held until __init__ returns.
UMT5_XXL = {  # wan/modules/t5.py umt5_xxl(): vocab 256384, dim 4096, ffn 10240, 64 heads, 24 layers
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
}


def _audio_adapter_parameters(dim: int = 5120, layers: int = 40, audio_dim: int = 768) -> int:
    """wan/modules/multitalk_model.py: AudioProjModel (5×12×768 → 512, first frame; 8×12×768 → 512
    for the others; 512 → 512; 512 → 32×768; LayerNorm 768) and, in each block, a LayerNorm(dim)
    (`norm_x`) and SingleStreamMutiAttention: q dim→dim, kv 768→2·dim, proj dim→dim, with biases."""
    proj = (5 * 12 * 768 + 1) * 512 + (8 * 12 * 768 + 1) * 512 + (512 + 1) * 512
    proj += (512 + 1) * 32 * audio_dim + 2 * audio_dim
    block = 2 * dim + (dim + 1) * dim + (audio_dim + 1) * 2 * dim + (dim + 1) * dim
    return proj + layers * block


def _loader_peaks_bytes() -> dict[str, int]:
    import torch
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "gpu"))
    from wan_step import WAN_I2V_14B  # Wan2.1-I2V-14B-480P in diffusers' form (the GPU benchmark's)

    with torch.device("meta"):
        dit = sum(p.numel() for p in WanTransformer3DModel(**WAN_I2V_14B).parameters())
        t5 = sum(p.numel() for p in UMT5EncoderModel(UMT5Config(**UMT5_XXL)).parameters())
    fp32, bf16 = 4, 2
    audio = _audio_adapter_parameters()
    return {
        "multitalk": (dit + audio) * fp32 + t5 * bf16,
        "infinitetalk": (dit + audio) * bf16 + (dit + audio) * fp32 + t5 * bf16,
    }


@pytest.mark.parametrize("cls_name", GPU_CLASSES)
def test_each_class_requests_more_host_ram_than_its_official_loader_peaks_at(app_module, cls_name):
    peaks = _loader_peaks_bytes()
    # Sanity against the published weights: the base DiT shards are 65.6 GB in fp32, the MultiTalk
    # and InfiniteTalk adapters 9.9 GB each, the bf16 encoder file 11.4 GB.
    assert 86e9 < peaks["multitalk"] < 88e9 and 124e9 < peaks["infinitetalk"] < 126e9
    requested = declared(app_module.app, cls_name).memory * 2**20
    # 10 % on top for the interpreter, CUDA's host allocations, wav2vec2 and the image's libraries.
    assert requested >= 1.1 * peaks[GPU_CLASSES[cls_name]]


def test_the_stitcher_is_a_cpu_class_on_its_own_small_image(app_module):
    fn = declared(app_module.app, "Stitcher")
    assert fn.gpu is None and fn.volumes == {}  # no GPU, no weights
    # The image Modal registered for it: not the GPU one with torch and flash-attn
    packages = installed(dockerfile(fn.image))
    assert "torch" not in packages and "flash-attn" not in packages and "mediapipe" in packages
    assert modal_target("stitch") == ("talkstack-avatar", "Stitcher")


def test_the_image_checks_out_the_official_code_at_pinned_commits_where_the_engine_reads_it(app_module):
    commands = dockerfile(declared(app_module.app, "MultiTalk").image)
    env = {c.split()[1].split("=")[0]: c.split("=", 1)[1] for c in commands if c.startswith("ENV ")}
    for (url, commit), variable in (
        (app_module.MULTITALK_REPO, "MULTITALK_CODE_DIR"),
        (app_module.INFINITETALK_REPO, "INFINITETALK_CODE_DIR"),
    ):
        assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{url} is pinned to a full commit SHA"
        path = env[variable]  # where talkstack/engines/gpu/avatar.py imports the code from
        clone = commands.index(f"RUN git clone --filter=blob:none {url} {path}")
        assert commands[clone + 1] == f"RUN git -C {path} checkout {commit}"


def test_the_deploy_time_gpu_setting_is_honoured_and_nothing_heavy_is_imported():
    code = (
        "import json, sys\n"
        "import modal_workers.avatar as avatar\n"
        "from tests.support.modal_introspect import declared\n"
        "print(json.dumps({'gpu': [declared(avatar.app, c).gpu for c in ('MultiTalk', 'InfiniteTalk')],\n"
        "  'heavy': sorted(m for m in ('torch', 'transformers', 'wan') if m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env["TALKSTACK_AVATAR_GPU"] = "A100-80GB"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"gpu": ["A100-80GB", "A100-80GB"], "heavy": []}


def test_the_smoke_method_renders_an_avatar_task_with_the_containers_turbo_setting(app_module):
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    from modal_workers.common import SmokeRender
    from talkstack.contract.worker import AvatarTask
    from talkstack.engines.base import RenderResult

    seen: list[tuple[Any, dict[str, bytes]]] = []

    class Engine:  # the loaded engine, replaced at the `engine(task, inputs, outdir, progress)` call
        model = "infinitetalk"

        def __call__(self, task: Any, inputs: dict[str, Path], outdir: Path, progress: Any) -> Any:
            seen.append((task, {role: path.read_bytes() for role, path in inputs.items()}))
            video = outdir / "video.mp4"
            video.write_bytes(b"mp4")
            return {"video": video}, RenderResult(output=video, bytes=3, duration_s=6.0, frames=150)

    instance = app_module.InfiniteTalk._get_user_cls()()
    instance.turbo, instance.engine, instance.load_s, instance.inputs_served = True, Engine(), 300.0, 0
    smoke = _find_callables_for_obj(instance, _PartialFunctionFlags.CALLABLE_INTERFACE)["smoke"]
    render = SmokeRender.model_validate(smoke(b"png", b"wav", {"max_duration_s": 6.0}))

    task, files = seen[0]
    assert isinstance(task, AvatarTask) and task.model == "infinitetalk"
    assert task.options.turbo is True and task.options.max_duration_s == 6.0
    assert files == {"image": b"png", "audio": b"wav"}
    assert (render.frames, render.load_s, render.first_input, render.video) == (150, 300.0, True, b"mp4")


def test_every_class_caps_its_containers_from_the_settings(app_module, monkeypatch):
    # A burst of avatar jobs (or one long avatar's parallel chunks) cannot start unbounded GPU
    # containers; Modal queues the rest.
    for cls_name in (*GPU_CLASSES, "Stitcher"):
        assert declared(app_module.app, cls_name).max_containers
    # The operator's numbers are what Modal registers (read back from the declaration, not the module).
    monkeypatch.setenv("TALKSTACK_AVATAR_MAX_CONTAINERS", "2")
    monkeypatch.setenv("TALKSTACK_STITCH_MAX_CONTAINERS", "3")
    monkeypatch.setenv("TALKSTACK_AVATAR_TIMEOUT_S", "7200")
    sys.modules.pop("modal_workers.avatar", None)
    module = importlib.import_module("modal_workers.avatar")
    for cls_name in GPU_CLASSES:
        fn = declared(module.app, cls_name)
        assert (fn.max_containers, fn.timeout) == (2, 7200)
    assert declared(module.app, "Stitcher").max_containers == 3
