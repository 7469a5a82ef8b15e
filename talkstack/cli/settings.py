"""`talkstack settings`: every setting of every group, its value here, default and source; and the
generator of docs/settings.md (`talkstack settings --write docs/settings.md`).

The catalogue of groups is assembled here, at the top layer: the pipeline group lives in the
pipeline layer and the CDK group in infra/cdk (loaded from the checkout; a plain install has none).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from talkstack.cli.common import friendly_errors, out
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import (
    ClientSettings,
    LocalSettings,
    MediaLimits,
    ModalDeploySettings,
    Settings,
)
from talkstack.settings.catalogue import REQUIRED, Group, describe, markdown
from talkstack.settings.moderation import ModerationSettings
from talkstack.settings.provenance import ProvenanceSettings
from talkstack.settings.quality import QualityThresholds
from talkstack.settings.scan import ScanSettings

DOCS_COMMAND = "talkstack settings --write docs/settings.md"
CDK_SETTINGS = Path("infra") / "cdk" / "talkstack_cdk" / "settings.py"
CDK_MODULE = "talkstack_cdk.settings"


def _repo_root() -> Path:
    from talkstack.local.resources import repo_root

    return repo_root()


def _cdk_settings() -> ModuleType | None:
    """infra/cdk/talkstack_cdk/settings.py (the CDK app's own settings module), if this is a checkout."""
    if CDK_MODULE in sys.modules:  # the CDK app or its tests already imported it
        return sys.modules[CDK_MODULE]
    path = _repo_root() / CDK_SETTINGS
    if not path.is_file():
        return None
    name = "_talkstack_cdk_settings"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves the postponed annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


def _cdk_context() -> dict[str, Any]:
    """`talkstack:` keys of cdk.json's context (`cdk deploy -c …` on the command line is not visible here)."""
    path = _repo_root() / "cdk.json"
    if not path.is_file():
        return {}
    context = json.loads(path.read_text()).get("context", {})
    return {key: value for key, value in context.items() if key.startswith("talkstack:")}


def groups() -> list[Group]:
    """Every group of settings, in the order docs/settings.md lists them."""
    from talkstack.pipeline.config import PipelineConfig

    catalogue = [
        Group("pipeline", PipelineConfig, "The Lambdas' configuration (the CDK stack sets it on each)."),
        Group("limits", MediaLimits, "Input limits, enforced alike by the CLI, the Lambdas and the workers."),
        Group("engines", Settings, "What the engines and the worker runtime read: tools, weights, code."),
        Group("local", LocalSettings, "The local stack (`talkstack up`, `demo`) and the AWS endpoint."),
        Group("client", ClientSettings, "Defaults of `talkstack api` (the REST API's URL and key)."),
        Group("modal", ModalDeploySettings, "The Modal apps, read where `modal deploy` runs."),
        Group("provenance", ProvenanceSettings, "Watermark (workers), C2PA content credentials (finalize)."),
        Group("quality", QualityThresholds, "Pass marks of the avatar quality report (workers, pipeline)."),
        Group("moderation", ModerationSettings, "Input moderation: the policy and the text classifier."),
        Group("scan", ScanSettings, "Output scanning: frames sampled and classified by the workers."),
    ]  # fmt: skip
    cdk = _cdk_settings()
    if cdk is not None:
        context = _cdk_context()
        by_key = {cdk.context_key(name): name for name in cdk.DeploySettings.model_fields}
        catalogue.append(
            Group(
                "cdk",
                cdk.DeploySettings,
                "The CDK stack: context `talkstack:<camelCase>` (wins), then `TALKSTACK_CDK_*` variables.",
                env_prefix=cdk.ENV_PREFIX,
                load=lambda: cdk.load_settings(context),
                context={by_key[key]: value for key, value in context.items() if key in by_key},
                context_key=cdk.context_key,
                context_source="cdk context (cdk.json)",
                defined_in=f"{CDK_SETTINGS.as_posix()}: DeploySettings",
            )
        )
    return catalogue


def settings_cmd(
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Only this group (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")] = False,
    write: Annotated[
        Path | None, typer.Option("--write", help="Write the Markdown reference (docs/settings.md) here.")
    ] = None,
) -> None:
    """Print every setting: its variable, value here, default and source (secrets masked)."""
    catalogue = groups()
    if write is not None:
        write.write_text(markdown(catalogue, DOCS_COMMAND))
        out.print(f"wrote {write}", highlight=False)
        return
    known = [g.name for g in catalogue]
    unknown = sorted(set(group or []) - set(known))
    if unknown:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"unknown settings group {', '.join(unknown)}; known: {', '.join(known)}",
        )
    chosen = [g for g in catalogue if not group or g.name in group]
    described = [(g, *describe(g)) for g in chosen]
    if as_json:
        document = [
            {"group": g.name, "problem": problem, "settings": [row.as_dict() for row in rows]}
            for g, rows, problem in described
        ]
        typer.echo(json.dumps(document, indent=2))
        return
    for g, rows, problem in described:
        out.print(f"[bold]{g.name}[/]: {g.summary}", highlight=False, soft_wrap=True)
        if problem:
            out.print(f"  does not load here: {problem}", markup=False, highlight=False, soft_wrap=True)
        width = max(len(row.env) for row in rows)
        for row in rows:
            value = "(required, unset)" if row.source == REQUIRED else row.value or "(unset)"
            shown = row.source in ("default", REQUIRED)
            default = "" if shown else f"; default: {row.default or '(unset)'}"
            out.print(
                f"  {row.env:<{width}}  {value}  [{row.source}{default}]",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        out.print()


def register(app: typer.Typer) -> None:
    app.command("settings")(friendly_errors(settings_cmd))


__all__ = ["groups", "register", "settings_cmd"]
