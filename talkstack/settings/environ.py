"""The one place that touches the process environment directly (besides pydantic-settings itself).

Reading goes through the settings classes. Writing is legitimate in one situation: the local stack
runs the Lambda handlers in this process, and configures them the way AWS does, through environment
variables (`TALKSTACK_*`, `AWS_ENDPOINT_URL`, powertools' switches). These helpers do that and drop
the cached settings of this package, so the next `get_*()` sees the new values. (The pipeline's own
`get_config` cache belongs to the pipeline layer; the local stack clears it itself.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from talkstack.settings.engines import get_settings
from talkstack.settings.limits import get_limits
from talkstack.settings.local import get_local_settings
from talkstack.settings.modal_deploy import get_modal_deploy
from talkstack.settings.moderation import get_moderation_settings
from talkstack.settings.provenance import get_provenance_settings
from talkstack.settings.quality import get_quality_thresholds
from talkstack.settings.scan import get_scan_settings


def reset_settings() -> None:
    """Forget the cached settings of every group in this package (they re-parse on next use)."""
    for getter in (
        get_settings,
        get_limits,
        get_local_settings,
        get_quality_thresholds,
        get_moderation_settings,
        get_provenance_settings,
        get_scan_settings,
        get_modal_deploy,
    ):
        getter.cache_clear()


def export(values: Mapping[str, str]) -> None:
    """Set environment variables for this process (and the handlers it runs)."""
    os.environ.update(values)
    reset_settings()


def export_defaults(values: Mapping[str, str]) -> None:
    """Set the variables that are not set already (a user's own value wins)."""
    for name, value in values.items():
        os.environ.setdefault(name, value)
    reset_settings()


def unset(names: Iterable[str]) -> None:
    for name in names:
        os.environ.pop(name, None)
    reset_settings()


def variables(prefix: str) -> dict[str, str]:
    """The variables whose names start with `prefix` (what a local Lambda function is configured with)."""
    return {name: value for name, value in os.environ.items() if name.startswith(prefix)}


def lookup(name: str) -> str | None:
    """The raw value of one variable: for `talkstack settings`, which shows where a value came from."""
    return os.environ.get(name)
