"""A matte step's task document, for engine tests that call render() directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from talkstack.contract.composition import MatteOptions
from talkstack.contract.worker import Markers, MatteTask, OutputUrl


def matte_task(model: str = "lite-matte", scene: int = 0) -> MatteTask:
    put = OutputUrl(url="http://127.0.0.1:9/none", key="k", content_type="application/json")
    return MatteTask(
        job_id="job-1",
        step="matte",
        attempt_id=f"matte-s{scene}-abc",
        attempt=1,
        model=model,
        options=MatteOptions(model=model, scene=scene),  # type: ignore[arg-type]
        outputs={"mask": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


def tiny_vitmatte():  # -> VitMatteForImageMatting (transformers imported lazily: heavy)
    """A ViTMatte with random weights from a tiny config (86 k parameters): the real class and
    forward pass, no download."""
    import torch
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting

    backbone = VitDetConfig(
        image_size=64,
        pretrain_image_size=64,
        patch_size=16,
        num_channels=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        window_size=0,
        use_relative_position_embeddings=False,
        out_features=["stage2"],
    )
    config = VitMatteConfig(
        backbone_config=backbone,
        hidden_size=32,
        convstream_hidden_sizes=[8, 16, 32],
        fusion_hidden_sizes=[32, 16, 8, 8],
    )
    torch.manual_seed(0)
    return VitMatteForImageMatting(config).eval()
