"""The "local" group: the local stack (`talkstack up`, `make demo`, the tests) and where the AWS clients
point.

The port and stack name are also options of the local-stack commands (typer reads the same variables
as the options' defaults); the handlers' own `TALKSTACK_*` pipeline settings are written by the local
stack itself (see `talkstack.settings.environ`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 4567
DEFAULT_STACK = "talkstack-local"
DEMO_PORT = 4568  # not DEFAULT_PORT, so `make demo` works while `talkstack up` runs
API_PORT_OFFSET = 10  # the REST API of a stack on 4567 is on 4577


def blank_is_none(value: object) -> object:
    """An empty variable means "not set" (as `os.environ.get(name) or default` always treated it)."""
    return None if value == "" else value


class LocalSettings(BaseSettings):
    """The local stack's knobs."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    local_port: int = DEFAULT_PORT
    """Port of the local stack's AWS endpoint (`talkstack up`, submit, status, …); its REST API listens
    on this port + 10."""
    local_stack: str = DEFAULT_STACK
    """Name of the local stack: every resource name derives from it."""
    demo_port: int = DEMO_PORT
    """Port of the throwaway stack `talkstack demo` starts."""
    lambda_root: Annotated[Path | None, BeforeValidator(blank_is_none)] = None
    """Folder of the handler modules the local Lambda runs (default: aws/lambda in this checkout)."""
    definition: Annotated[Path | None, BeforeValidator(blank_is_none)] = None
    """The state machine definition the local stack deploys (default:
    aws/stepfunctions/job.asl.json in this checkout)."""
    aws_endpoint_url: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        None, validation_alias="AWS_ENDPOINT_URL"
    )
    """AWS's own variable, set by local mode: every boto3 client talks to the emulator there, and S3
    uses path-style addressing so pre-signed URLs work against an IP endpoint."""


@lru_cache(maxsize=1)
def get_local_settings() -> LocalSettings:
    return LocalSettings()
