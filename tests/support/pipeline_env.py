"""PipelineConfig in tests: the local stack's settings as field values."""

from __future__ import annotations

from talkstack.local.resources import LocalResources


def local_config_fields() -> dict[str, str]:
    """The local stack's TALKSTACK_* settings, keyed by PipelineConfig field name."""
    return {k.removeprefix("TALKSTACK_").lower(): v for k, v in LocalResources().pipeline_env().items()}
