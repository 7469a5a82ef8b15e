"""The checked-in JSON Schemas in schemas/ must match the models they are generated from."""

from __future__ import annotations

import json
import re
from pathlib import Path

from talkstack.api.openapi import openapi_document, published_documents
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
        "worker-task.schema.json",
        "worker-marker.schema.json",
        "template.schema.json",
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


def test_checked_in_openapi_document_matches_the_code():
    stale = stale_schemas(SCHEMAS_DIR, published_documents())
    assert not stale, (
        f"schemas/ is out of date ({', '.join(stale)}): run `make schemas` and commit the result"
    )


def test_openapi_document_is_complete():
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    operations = {(m.upper(), p) for p, ms in doc["paths"].items() for m in ms}
    assert operations == {
        ("POST", "/v1/avatar/generate"),
        ("POST", "/v1/voice/clone"),
        ("DELETE", "/v1/jobs/{job_id}"),
        ("DELETE", "/v1/data"),
        ("POST", "/v1/video/generate"),
        ("POST", "/v1/composition/generate"),
        ("POST", "/v1/uploads"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs/{job_id}/cancel"),
        ("GET", "/v1/models"),
        ("GET", "/v1/usage"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks"),
        ("GET", "/v1/webhooks/secret"),
        ("POST", "/v1/webhooks/secret/rotate"),
        ("GET", "/v1/webhooks/{webhook_id}"),
        ("DELETE", "/v1/webhooks/{webhook_id}"),
        ("POST", "/v1/webhooks/{webhook_id}/rotate"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/templates"),
        ("GET", "/v1/templates/{template_id}"),
        ("PUT", "/v1/templates/{template_id}"),
        ("DELETE", "/v1/templates/{template_id}"),
        ("POST", "/v1/templates/{template_id}/generate"),
        ("POST", "/v1/jobs/{job_id}/render"),
        ("GET", "/health"),
    }
    text = json.dumps(doc)
    referenced = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text))
    assert referenced <= set(doc["components"]["schemas"]), "dangling $ref"
    generate = doc["paths"]["/v1/avatar/generate"]["post"]
    assert set(generate["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert generate["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "JobAccepted"
    )
    assert "Retry-After" in generate["responses"]["429"]["headers"]
    from_template = doc["paths"]["/v1/templates/{template_id}/generate"]["post"]
    assert from_template["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "TemplateGenerate"
    )
    assert {"202", "404", "422", "429"} <= set(from_template["responses"])
    assert "409" in doc["paths"]["/v1/jobs/{job_id}/render"]["post"]["responses"]
    for path, methods in doc["paths"].items():
        for operation in methods.values():
            if path == "/health":
                assert operation["security"] == []
            else:
                assert "security" not in operation  # the global bearer / x-api-key requirement applies
                assert operation["responses"]["401"]["content"]["application/json"]["schema"][
                    "$ref"
                ].endswith("ErrorBody")
    assert doc["security"] == [{"bearerAuth": []}, {"apiKey": []}]
