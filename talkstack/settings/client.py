"""The "client" group: how `talkstack api …` reaches a REST API (typer reads these variables as the
defaults of --url and --key)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from talkstack.settings.local import API_PORT_OFFSET, DEFAULT_PORT

DEFAULT_API_URL = f"http://127.0.0.1:{DEFAULT_PORT + API_PORT_OFFSET}"


class ClientSettings(BaseSettings):
    """The remote CLI's defaults."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    api_url: str = DEFAULT_API_URL
    """Base URL of the REST API (default: the local stack's)."""
    api_key: SecretStr | None = None
    """API key (`tsk_…`; make a local one with `talkstack keys create`)."""
