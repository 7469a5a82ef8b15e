"""Uploads through the API service, on moto's S3 and DynamoDB: a ticket signed for its type and size
and counted against its key's quota, a job that names its key's upload ids, another key's upload
id answered as a missing one, multipart files stored only with a good request, and the form parser."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from talkstack.api.keys import Principal
from talkstack.api.models import UploadRequest
from talkstack.api.service import ApiService
from talkstack.api.uploads import MAX_FORM_BYTES, UPLOAD_PREFIX, parse_form
from talkstack.contract.record import utc_now
from talkstack.contract.request import AvatarRequest
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import MediaLimits
from tests.support.steps import INPUT, SAMPLES
from tests.unit.api.api_env import A, B, executions, make_service

PNG = (SAMPLES / "portrait.png").read_bytes()
WAV = (SAMPLES / "speech.wav").read_bytes()


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def uploaded(api: ApiService, who: Principal, filename: str, content_type: str, data: bytes) -> str:
    """An upload id of `who` whose bytes were PUT as the client would (straight into the bucket)."""
    ticket = api.uploads.create(
        who, UploadRequest(filename=filename, content_type=content_type, bytes=len(data))
    )
    upload = api.uploads.get(who, ticket.upload_id)
    assert upload is not None
    api.svc.s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=data, ContentType=content_type)
    return ticket.upload_id


def test_a_ticket_is_signed_for_its_type_and_size_and_counted_against_the_keys_quota(aws, api):
    ticket = api.uploads.create(
        A, UploadRequest(filename="my face.png", content_type="Image/PNG; x=1", bytes=1234)
    )

    upload = api.uploads.get(A, ticket.upload_id)
    assert upload is not None and upload.bucket == INPUT
    assert upload.key == f"{UPLOAD_PREFIX}{A.key_id}/{ticket.upload_id}/my_face.png"
    assert ticket.headers == {"Content-Type": "image/png", "Content-Length": "1234"}
    assert ticket.max_bytes == api.limits.max_image_bytes
    url, query = urlsplit(ticket.url), parse_qs(urlsplit(ticket.url).query)
    assert url.path.endswith(f"/{upload.key}") and {"Signature", "X-Amz-Signature"} & set(query)
    # The type is part of what is signed (SigV2 puts it in the query, SigV4 in the signed headers)
    assert query.get("content-type") == ["image/png"] or "content-type" in query["X-Amz-SignedHeaders"][0]
    assert abs((ticket.expires_at - utc_now()).total_seconds() - 3600) < 60
    assert sum(api.uploads.quota.held(A)[0].values()) == 1234
    assert api.uploads.get(B, ticket.upload_id) is None  # another key's upload is none of B's


@pytest.mark.parametrize(
    ("content_type", "size_of", "code"),
    [
        ("text/plain", lambda limits: 10, ErrorCode.UNSUPPORTED_MEDIA),
        ("image/png", lambda limits: limits.max_image_bytes + 1, ErrorCode.IMAGE_TOO_LARGE),
        ("audio/wav", lambda limits: limits.max_audio_bytes + 1, ErrorCode.INPUT_TOO_LARGE),
    ],
    ids=["type", "image-size", "audio-size"],
)
def test_a_ticket_for_what_the_engines_cannot_read_is_refused_and_counts_nothing(
    aws, api, content_type, size_of: Callable[[MediaLimits], int], code
):
    size = size_of(api.limits)  # one byte over the limits the service enforces
    caught = refusal(
        lambda: api.uploads.create(A, UploadRequest(filename="f", content_type=content_type, bytes=size))
    )
    assert caught.code == code
    assert api.uploads.quota.held(A) == ({}, None)


def test_a_file_at_its_kinds_limit_is_taken(aws, api):
    for content_type, limit in (
        ("image/webp", api.limits.max_image_bytes),
        ("audio/flac", api.limits.max_audio_bytes),
    ):
        ticket = api.uploads.create(A, UploadRequest(filename="f", content_type=content_type, bytes=limit))
        assert ticket.max_bytes == limit


def test_uploads_beyond_the_tiers_quota_are_refused_per_key(aws):
    api = make_service(aws, upload_quota_pro_bytes=1500)
    request = UploadRequest(filename="a.wav", content_type="audio/wav", bytes=1000)
    api.uploads.create(A, request)

    caught = refusal(lambda: api.uploads.create(A, request))

    assert caught.code == ErrorCode.STORAGE_QUOTA_EXCEEDED and caught.details["quota_bytes"] == 1500
    api.uploads.create(B, request)  # B's quota is its own


def test_a_job_reads_its_keys_uploads_by_id(aws, api):
    image = uploaded(api, A, "face.png", "image/png", PNG)
    audio = uploaded(api, A, "speech.wav", "audio/wav", WAV)

    accepted, _ = api.submit(A, "avatar", {"inputs": {"image": image, "audio": audio}}, None)

    record = api.svc.store.get(accepted.job_id)
    assert record is not None and isinstance(record.request, AvatarRequest)
    inputs = record.request.inputs
    assert str(inputs.image).startswith(f"s3://{INPUT}/{UPLOAD_PREFIX}{A.key_id}/{image}/")
    assert inputs.audio is not None and str(inputs.audio).startswith(
        f"s3://{INPUT}/{UPLOAD_PREFIX}{A.key_id}/{audio}/"
    )
    assert executions(aws) == [accepted.job_id]


def test_another_keys_upload_id_is_not_found_in_the_words_of_a_missing_one(aws, api):
    image = uploaded(api, A, "face.png", "image/png", PNG)
    audio = uploaded(api, B, "speech.wav", "audio/wav", WAV)  # B's own audio
    never = "upl_" + "z" * 24

    theirs = refusal(lambda: api.submit(B, "avatar", {"inputs": {"image": image, "audio": audio}}, None))
    missing = refusal(lambda: api.submit(B, "avatar", {"inputs": {"image": never, "audio": audio}}, None))

    assert theirs.code == missing.code == ErrorCode.INPUT_NOT_FOUND
    assert theirs.message.replace(image, never) == missing.message
    assert {k: str(v).replace(image, never) for k, v in theirs.details.items()} == {
        k: str(v) for k, v in missing.details.items()
    }
    assert api.svc.store.list_owned(B.key_id)[0] == [] and executions(aws) == []


def test_a_relative_key_that_is_not_an_upload_id_is_a_bad_request(aws, api):
    audio = uploaded(api, A, "speech.wav", "audio/wav", WAV)
    caught = refusal(lambda: api.submit(A, "avatar", {"inputs": {"image": "face.png", "audio": audio}}, None))
    assert caught.code == ErrorCode.INVALID_REQUEST and caught.details["field"] == "inputs.image"


def test_multipart_files_are_stored_only_once_the_request_passed_its_checks(aws, api):
    image = api.uploads.pending(A, "image", "face.png", "image/png", PNG)
    audio = api.uploads.pending(A, "audio", "speech.wav", "audio/wav", WAV)
    body = {"inputs": {"image": image.upload_id, "audio": audio.upload_id}}

    # A bad request: nothing stored, nothing counted
    bad = refusal(lambda: api.submit(A, "avatar", {**body, "job_id": "mine"}, None, files=[image, audio]))
    assert bad.code == ErrorCode.INVALID_REQUEST
    assert aws.s3.list_objects_v2(Bucket=INPUT).get("KeyCount") == 0
    assert api.uploads.quota.held(A) == ({}, None)

    accepted, _ = api.submit(A, "avatar", body, None, files=[image, audio])

    stored = api.uploads.get(A, image.upload_id)
    assert stored is not None
    assert aws.s3.get_object(Bucket=INPUT, Key=stored.key)["Body"].read() == PNG
    assert sum(api.uploads.quota.held(A)[0].values()) == len(PNG) + len(WAV)
    actions = [(e.action, e.object.id) for e in api.audit.trail(A.key_id, newest_first=False)[0]]
    assert actions == [
        ("upload.created", image.upload_id),
        ("upload.created", audio.upload_id),
        ("job.submitted", accepted.job_id),
    ]


def test_a_replayed_multipart_request_names_the_same_uploads_and_stores_nothing_again(aws, api):
    def send() -> tuple[str, bool]:
        image = api.uploads.pending(A, "image", "face.png", "image/png", PNG, idempotency_key="order-1")
        audio = api.uploads.pending(A, "audio", "speech.wav", "audio/wav", WAV, idempotency_key="order-1")
        body = {"inputs": {"image": image.upload_id, "audio": audio.upload_id}}
        accepted, replayed = api.submit(A, "avatar", body, "order-1", files=[image, audio])
        return accepted.job_id, replayed

    first, again = send(), send()

    assert first == (first[0], False) and again == (first[0], True)
    assert sum(api.uploads.quota.held(A)[0].values()) == len(PNG) + len(WAV)  # counted once
    # Another key's identical request names other uploads (the owner is hashed into the id)
    mine = api.uploads.pending(A, "image", "face.png", "image/png", PNG, idempotency_key="order-1")
    theirs = api.uploads.pending(B, "image", "face.png", "image/png", PNG, idempotency_key="order-1")
    assert mine.upload_id != theirs.upload_id


def form(*parts: tuple[str, str | None, str | None, bytes], boundary: str = "XyZ") -> tuple[bytes, str]:
    chunks = []
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_form_gives_its_request_json_and_its_files_byte_for_byte():
    body, content_type = form(
        ("request", None, None, b'{"inputs": {"image": "face"}}'),
        ("image", "face.png", "image/png", PNG),
    )

    request_json, files = parse_form(body, content_type)

    assert request_json == '{"inputs": {"image": "face"}}'
    assert files == {"image": ("face.png", "image/png", PNG)}


def test_a_form_field_other_than_request_is_refused():
    body, content_type = form(("request", None, None, b"{}"), ("note", None, None, b"hi"))
    caught = refusal(lambda: parse_form(body, content_type))
    assert caught.code == ErrorCode.INVALID_REQUEST and "'note'" in caught.message


def test_a_form_without_a_boundary_is_refused():
    assert refusal(lambda: parse_form(b"", "multipart/form-data")).code == ErrorCode.INVALID_REQUEST


def test_a_form_of_exactly_the_most_bytes_is_read_and_one_byte_more_is_refused():
    empty, _ = form(("audio", "a.wav", "audio/wav", b""))
    fits, content_type = form(("audio", "a.wav", "audio/wav", b"x" * (MAX_FORM_BYTES - len(empty))))
    over, _ = form(("audio", "a.wav", "audio/wav", b"x" * (MAX_FORM_BYTES - len(empty) + 1)))
    assert (len(fits), len(over)) == (MAX_FORM_BYTES, MAX_FORM_BYTES + 1)

    assert len(parse_form(fits, content_type)[1]["audio"][2]) == MAX_FORM_BYTES - len(empty)
    assert refusal(lambda: parse_form(over, content_type)).code == ErrorCode.INPUT_TOO_LARGE


def test_a_multipart_file_at_its_kinds_limit_is_taken_and_one_byte_more_refused(aws):
    api = make_service(aws)
    api.uploads.limits = MediaLimits(max_image_bytes=len(PNG), max_audio_bytes=len(WAV))

    assert api.uploads.pending(A, "image", "face.png", "image/png", PNG).filename == "face.png"
    for field, content_type, data, code in (
        ("image", "image/png", PNG + b"\0", ErrorCode.IMAGE_TOO_LARGE),
        ("audio", "audio/wav", WAV + b"\0", ErrorCode.INPUT_TOO_LARGE),
    ):
        caught = refusal(lambda: api.uploads.pending(A, field, "f", content_type, data))  # noqa: B023
        assert (caught.code, caught.details["field"]) == (code, f"inputs.{field}")


def test_an_upload_whose_bytes_never_arrived_is_not_found_by_its_id(aws, api):
    audio = uploaded(api, A, "speech.wav", "audio/wav", WAV)
    ticket = api.uploads.create(
        A, UploadRequest(filename="face.png", content_type="image/png", bytes=len(PNG))
    )

    caught = refusal(
        lambda: api.submit(A, "avatar", {"inputs": {"image": ticket.upload_id, "audio": audio}}, None)
    )

    # Named as the caller named it: the upload id, not the bucket and key behind it
    assert caught.code == ErrorCode.INPUT_NOT_FOUND and ticket.upload_id in caught.message
    assert INPUT not in caught.message and executions(aws) == []
