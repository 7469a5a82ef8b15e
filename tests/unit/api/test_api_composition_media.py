"""A composition names media in many places (a scene's upload, background and music, an avatar's
photo, speech and reference voice, a clip's first frame, the composition's music, the consent
clip): another key's upload is refused at every one of them before any S3 request, by upload id or
by `s3://` URL, in the words of a missing one, naming the field as the client wrote it
(`scenes[0].source.media`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from talkstack.api.keys import Principal
from talkstack.api.models import UploadRequest
from talkstack.api.service import ApiService
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.steps import INPUT, SAMPLES
from tests.unit.api.api_env import A, B, executions

PNG = (SAMPLES / "portrait.png").read_bytes()
MISSING = f"s3://{INPUT}/uploads/{B.key_id}/upl_{'z' * 24}/missing.png"
"""Where B might have an upload, but has none: what B's refusal must look like."""
TITLE = {"source": {"type": "title", "title": "Chapter one"}}
CONSENT = {
    "attested_by": "ops@example.com",
    "attested_at": "2026-01-01T00:00:00Z",
    "subject": "Grace",
    "scope": "both",
    "statement": "I agree.",
}


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def uploaded(api: ApiService, who: Principal) -> str:
    ticket = api.uploads.create(
        who, UploadRequest(filename="face.png", content_type="image/png", bytes=len(PNG))
    )
    upload = api.uploads.get(who, ticket.upload_id)
    assert upload is not None
    api.svc.s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=PNG, ContentType="image/png")
    return ticket.upload_id


def avatar(**inputs: str) -> dict[str, Any]:
    # (B's own photo where the refused reference is another: `OWN` is replaced by a real upload)
    return {"source": {"type": "avatar", "inputs": {"image": OWN, "text": "Hello.", **inputs}}}


OWN = "own-photo"


PLACES: dict[str, Callable[[str], dict[str, Any]]] = {
    "scenes[0].source.media": lambda ref: {"scenes": [{"source": {"type": "media", "media": ref}}]},
    "scenes[0].background.media": lambda ref: {
        "scenes": [{**TITLE, "background": {"type": "image", "media": ref}}]
    },
    "scenes[0].music.media": lambda ref: {"scenes": [{**TITLE, "music": {"media": ref}}]},
    "options.music.media": lambda ref: {"scenes": [TITLE], "options": {"music": {"media": ref}}},
    "scenes[1].source.inputs.image": lambda ref: {"scenes": [TITLE, avatar(image=ref)]},
    "scenes[0].source.inputs.reference_voice": lambda ref: {"scenes": [avatar(reference_voice=ref)]},
    "scenes[0].source.inputs.image[video]": lambda ref: {
        "scenes": [{"source": {"type": "video", "inputs": {"prompt": "a sunrise", "image": ref}}}],
        "preview": True,  # (no GPU video model here to check; a preview still checks its media)
    },
    "consent.clip": lambda ref: {"scenes": [TITLE], "consent": {**CONSENT, "clip": ref}},
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_another_keys_upload_anywhere_in_a_composition_is_not_found_like_a_missing_one(aws, api, place):
    theirs = uploaded(api, A)
    upload = api.uploads.get(A, theirs)
    assert upload is not None
    their_url = f"s3://{upload.bucket}/{upload.key}"
    own = uploaded(api, B)

    def body(ref: str) -> dict[str, Any]:
        text = json.dumps(PLACES[place](ref))
        return json.loads(text.replace(json.dumps(OWN), json.dumps(own)))

    by_id = refusal(lambda: api.submit(B, "composition", body(theirs), None))
    by_url = refusal(lambda: api.submit(B, "composition", body(their_url), None))
    missing = refusal(lambda: api.submit(B, "composition", body(MISSING), None))

    field = place.removesuffix("[video]")
    for caught in (by_id, by_url, missing):
        assert caught.code == ErrorCode.INPUT_NOT_FOUND, caught.message
        assert caught.message.startswith(f"{field}: "), caught.message
        assert caught.details["field"] == field
    assert by_url.message.replace(their_url, MISSING) == missing.message
    assert api.svc.store.list_owned(B.key_id)[0] == [] and executions(aws) == []
