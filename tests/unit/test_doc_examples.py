"""The request examples in docs/examples/ are what users copy: they must parse and validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from talkstack.contract import is_multitalk_v0_manifest, parse_job_request

EXAMPLES = sorted((Path(__file__).parents[2] / "docs" / "examples").rglob("*.json"))
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "job-request.schema.json").read_text())


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_native_ones_match_the_published_schema(path):
    data = json.loads(path.read_text())
    request = parse_job_request(data)
    assert request.task in {"avatar", "voice", "video", "composition"}
    if not is_multitalk_v0_manifest(data):
        jsonschema.Draft202012Validator(SCHEMA).validate(data)
