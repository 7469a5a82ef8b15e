"""The checked-in JSON Schemas in schemas/ must match the models they are generated from."""

from __future__ import annotations

import json
from pathlib import Path

from talkstack.contract import schema_documents, stale_schemas, write_schemas

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def test_checked_in_schemas_match_the_models():
    stale = stale_schemas(SCHEMAS_DIR)
    assert not stale, (
        f"schemas/ is out of date ({', '.join(stale)}): run `make schemas` and commit the result"
    )


def test_expected_documents():
    assert set(schema_documents()) == {
        "job-request.schema.json",
        "job-record.schema.json",
        "job-event.schema.json",
    }


def test_write_then_detect_drift(tmp_path):
    written = write_schemas(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(schema_documents())
    assert stale_schemas(tmp_path / "out") == []
    text = written[0].read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "$defs"')  # 2-space indent, sorted keys
    assert json.loads(text) == schema_documents()[written[0].name]

    written[0].write_text(text.replace("talkstack", "talkstack!", 1), encoding="utf-8")
    written[1].unlink()
    assert stale_schemas(tmp_path / "out") == sorted(
        [written[0].name, written[1].name], key=list(schema_documents()).index
    )
