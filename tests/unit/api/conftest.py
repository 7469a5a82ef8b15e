"""Fixtures of the API service tests (tests/unit/api/api_env.py): moto's in-process AWS."""

from tests.unit.api.api_env import api, aws  # noqa: F401 - fixtures
