"""The job contract: requests (native + MultiTalk API v0 manifest), media refs, records, events and their
schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from jsonschema import Draft202012Validator

from talkstack.contract import (
    EVENT_STATUS,
    EVENT_TYPES,
    AvatarRequest,
    JobError,
    JobEvent,
    JobRecord,
    JobResult,
    MediaRef,
    OutputFile,
    VideoRequest,
    VoiceRequest,
    parse_job_request,
    schema_documents,
)
from talkstack.contract.fields import MEDIA_REF_PATTERN
from talkstack.contract.parse import MAX_JSON_DEPTH, load_request_json
from talkstack.errors import ErrorCode, TalkstackError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def avatar(**overrides):
    data = {"task": "avatar", "inputs": {"image": "face.png", "audio": "speech.wav"}}
    data.update(overrides)
    return data


def invalid(data) -> TalkstackError:
    with pytest.raises(TalkstackError) as info:
        parse_job_request(data)
    err = info.value
    assert err.code == ErrorCode.INVALID_REQUEST
    assert "\n" not in err.message and err.message.strip() == err.message
    json.dumps(err.details)  # details must be JSON-safe (they go into records and API bodies)
    return err


# --- native requests ------------------------------------------------------------------------------


def test_native_avatar_from_audio():
    req = parse_job_request(
        avatar(
            job_id="client-42_a",
            options={"model": "multitalk", "resolution": "720p", "fps": 30, "seed": 7, "turbo": True},
            output={"bucket": "my-out", "prefix": "renders/2025/", "filename": "hello.mp4"},
            notify={"webhook_url": "https://hooks.example.com/t", "events": ["job.completed", "job.failed"]},
            callback_id="cb-1",
            metadata={"customer": "acme"},
        )
    )
    assert isinstance(req, AvatarRequest)
    assert req.inputs.image == MediaRef(None, "face.png")
    assert req.inputs.audio == MediaRef(None, "speech.wav")
    assert req.options.model == "multitalk" and req.options.turbo and req.options.fps == 30
    assert req.options.effective_resolution == "720p"
    assert not req.needs_voice_step and req.worker_steps == ("avatar",)
    assert req.output.prefix == "renders/2025"  # trailing slash dropped
    assert req.output_key("j1") == "renders/2025/hello.mp4"
    assert req.notify.wants("job.completed") and not req.notify.wants("job.progress")
    assert set(req.media_inputs()) == {"image", "audio"}


def test_avatar_defaults():
    req = parse_job_request(avatar())
    assert req.options.model == "lite-avatar" and req.options.fps == 25
    assert req.options.effective_resolution == "480p"
    assert req.output_key("job-9") == "job-9/video.mp4"  # no prefix: a folder named after the job
    assert req.notify.webhook_url is None and set(req.notify.events) == set(EVENT_TYPES)


def test_avatar_from_text_needs_voice_step():
    req = parse_job_request(
        {
            "task": "avatar",
            "inputs": {
                "image": "s3://in-bucket/face.png",
                "text": "Hello there",
                "reference_voice": "me.wav",
            },
            "options": {"speed": 1.2, "emotion": "happy", "voice": {"model": "chatterbox", "language": "de"}},
        }
    )
    assert req.needs_voice_step
    assert req.worker_steps == ("voice", "avatar")
    voice = req.voice_step_options()
    assert (voice.model, voice.language, voice.speed, voice.emotion, voice.format) == (
        "chatterbox",
        "de",
        1.2,
        "happy",
        "wav",
    )


def test_two_speaker_avatar():
    req = parse_job_request(
        avatar(
            inputs={"image": "pair.png", "audio": "a.wav", "second_audio": "b.wav"},
            options={
                "model": "multitalk",
                "audio_type": "para",
                "speaker_boxes": [[0, 0, 300, 400], [300, 0, 300, 400]],
            },
        )
    )
    assert req.options.audio_type == "para"
    assert req.options.speaker_boxes == [(0, 0, 300, 400), (300, 0, 300, 400)]


def test_two_speakers_are_refused_for_infinitetalk():
    # InfiniteTalk's multi-person weights are a different DiT than the single-speaker one its
    # workers load (contract/request.py TWO_SPEAKER_INFINITETALK); multitalk renders two speakers.
    err = invalid(
        avatar(
            inputs={"image": "pair.png", "audio": "a.wav", "second_audio": "b.wav"},
            options={"model": "infinitetalk", "audio_type": "add"},
        )
    )
    assert "inputs.second_audio" in err.message and "multitalk" in err.message


def test_native_voice():
    req = parse_job_request(
        {
            "task": "voice",
            "inputs": {"text": "Guten Tag", "reference_voice": "s3://voices/ref.wav"},
            "options": {"model": "indextts2", "language": "de", "pitch": -2, "exaggeration": 0.7},
            "output": {"filename": "greeting.mp3"},
        }
    )
    assert isinstance(req, VoiceRequest)
    assert req.options.format == "mp3"  # inferred from the file name
    assert req.needs_voice_step and req.primary_model == "indextts2"
    assert req.output_key("v1") == "v1/greeting.mp3"
    assert parse_job_request({"task": "voice", "inputs": {"text": "hi"}}).output_filename == "speech.wav"


def test_native_video():
    req = parse_job_request(
        {
            "task": "video",
            "inputs": {"prompt": "a red fox running through snow", "image": "start.jpg"},
            "options": {"model": "wan2.2-ti2v-5b", "aspect": "9:16", "fps": 30, "duration_s": 8, "steps": 30},
            "output": {"prefix": "", "filename": "fox.mp4", "unique_suffix": True},
        }
    )
    assert isinstance(req, VideoRequest)
    assert req.options.aspect == "9:16" and req.options.duration_s == 8.0
    assert req.output_key("vid-1") == "vid-1/fox.mp4"
    assert parse_job_request({"task": "video", "inputs": {"prompt": "x"}}).options.model == "ltx-video"


def test_explicit_size_replaces_preset():
    req = parse_job_request(avatar(options={"width": 640, "height": 360}))
    assert req.options.effective_resolution is None
    err = invalid(avatar(options={"width": 640, "height": 360, "resolution": "480p"}))
    assert "resolution" in err.message
    assert "width" in invalid(avatar(options={"width": 640})).message
    assert "options.width" in invalid(avatar(options={"width": 641, "height": 360})).message


def test_accepts_json_text_and_bytes():
    data = avatar(options={"prompt": "smiling, café"})
    assert parse_job_request(json.dumps(data)) == parse_job_request(json.dumps(data).encode())


# --- MultiTalk API v0 manifest (the original API's shape) ------------------------------------------

MULTITALK_V0 = {
    "input": {
        "audio_s3_url": "s3://seed-in/jobs/7/voice.wav",
        "reference_image_s3_url": "s3://seed-in/jobs/7/portrait.jpg",
        "prompt": "A presenter in a studio",
    },
    "output": {"s3_bucket": "seed-out", "s3_prefix": "results/7", "filename": "talk.mp4"},
    "options": {
        "resolution": "720p",
        "video_length": 12.5,
        "turbo_mode": True,
        "webhook_url": "https://x.io/h",
    },
}


def test_multitalk_v0_manifest_converts_to_avatar():
    req = parse_job_request(json.dumps(MULTITALK_V0))
    assert isinstance(req, AvatarRequest)
    assert req.inputs.audio == MediaRef("seed-in", "jobs/7/voice.wav")
    assert req.inputs.image == MediaRef("seed-in", "jobs/7/portrait.jpg")
    assert req.inputs.text is None and not req.needs_voice_step
    assert req.options.prompt == "A presenter in a studio"
    assert (req.output.bucket, req.output.prefix, req.output.filename) == (
        "seed-out",
        "results/7",
        "talk.mp4",
    )
    assert req.output_key("any") == "results/7/talk.mp4"
    assert req.options.resolution == "720p"
    assert req.options.max_duration_s == 12.5
    assert req.options.turbo is True
    assert req.notify.webhook_url == "https://x.io/h"


def test_multitalk_v0_manifest_minimal_and_errors():
    req = parse_job_request({"input": MULTITALK_V0["input"], "output": {}})
    assert (
        req.options.turbo is False and req.options.max_duration_s is None and req.notify.webhook_url is None
    )
    err = invalid({**MULTITALK_V0, "options": {"turbo": True}})
    assert err.message.startswith("options.turbo:") and "legacy" in err.message
    err = invalid({"input": {"audio_s3_url": "s3://b-1/a.wav"}, "output": {}})
    assert "input.reference_image_s3_url: field required" in err.message
    assert "output.filename" in invalid({**MULTITALK_V0, "output": {"filename": "talk.wav"}}).message


# --- request errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"task": "avatar", "inputs": {"audio": "a.wav"}}, "inputs.image"),
        ({"task": "avatar", "inputs": {"image": "face.png"}}, "inputs"),
        (avatar(inputs={"image": "face.png", "audio": "s3://Bad_Bucket/a.wav"}), "inputs.audio"),
        (avatar(inputs={"image": "s3://bucket-only", "audio": "a.wav"}), "inputs.image"),
        (avatar(inputs={"image": "../secret/face.png", "audio": "a.wav"}), "inputs.image"),
        (avatar(inputs={"image": "media/../../face.png", "audio": "a.wav"}), "inputs.image"),
        (avatar(inputs={"image": "/etc/passwd", "audio": "a.wav"}), "inputs.image"),
        (avatar(inputs={"image": "", "audio": "a.wav"}), "inputs.image"),
        (avatar(inputs={"image": "https://example.com/face.png", "audio": "a.wav"}), "inputs.image"),
        (avatar(output={"filename": "video.mov"}), "output.filename"),
        (avatar(output={"filename": "dir/video.mp4"}), "output.filename"),
        (avatar(output={"prefix": "a/../b"}), "output.prefix"),
        ({"task": "voice", "inputs": {"text": "hi"}, "output": {"filename": "x.mp4"}}, "output.filename"),
        (avatar(options={"resolutoin": "720p"}), "options.resolutoin"),
        (avatar(colour="red"), "colour"),
        (avatar(notify={"webhook_url": "http://example.com/hook"}), "notify.webhook_url"),
        (avatar(notify={"webhook_url": "ftp://example.com/hook"}), "notify.webhook_url"),
        (avatar(notify={"webhook_url": "not a url"}), "notify.webhook_url"),
        (avatar(notify={"events": ["job.exploded"]}), "notify.events[0]"),
        (avatar(job_id="has space"), "job_id"),
        (avatar(job_id="x" * 81), "job_id"),
        (avatar(callback_id="c" * 257), "callback_id"),
        (avatar(options={"speed": 1.5}), "options.speed"),
        (avatar(options={"audio_type": "add"}), "options.audio_type"),
        (avatar(options={"speaker_boxes": [[0, 0, 10, 10]]}), "options.speaker_boxes"),
        ({"task": "video", "inputs": {"prompt": "x"}, "options": {"duration_s": 90}}, "options.duration_s"),
        ({"task": "video", "inputs": {"prompt": "x"}, "options": {"fps": 60}}, "options.fps"),
        ({"task": "voice", "inputs": {"text": "   "}}, "inputs.text"),
        ({"task": "painting", "inputs": {}}, "task"),
        ({"inputs": {"image": "face.png"}}, "task"),
    ],
)
def test_invalid_requests_name_the_field(data, field):
    err = invalid(data)
    assert err.message.startswith(f"{field}:"), err.message
    assert err.details["errors"][0]["field"] == field


def test_missing_audio_and_text_says_so():
    err = invalid({"task": "avatar", "inputs": {"image": "face.png"}})
    assert "audio" in err.message and "text" in err.message
    assert "not both" in invalid(avatar(inputs={"image": "f.png", "audio": "a.wav", "text": "hi"})).message


def test_first_of_several_errors_and_count():
    err = invalid({"task": "avatar", "inputs": {"image": "../x.png", "audio": "/a.wav"}, "typo": 1})
    assert err.message.startswith("inputs.image:") and "(and 2 more problems)" in err.message
    assert [e["field"] for e in err.details["errors"]] == ["inputs.image", "inputs.audio", "typo"]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"\xff\xfe{}", "", b'{"task": "avatar", "x": NaN}', b"[1, 2]", b'"text"']
)
def test_invalid_json(raw):
    assert invalid(raw).message.startswith("request:")


def test_loopback_http_webhooks_allowed():
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://localhost/h",
        "http://[::1]:9000/",
        "https://a.b/c?d=1",
    ):
        assert parse_job_request(avatar(notify={"webhook_url": url})).notify.webhook_url == url
    assert "credentials" in invalid(avatar(notify={"webhook_url": "https://u:p@a.b/"})).message


# --- media references -----------------------------------------------------------------------------------


def test_media_ref_parse():
    assert MediaRef.parse("s3://in-bucket/a/b c+d.png") == MediaRef("in-bucket", "a/b c+d.png")
    assert MediaRef.parse("media/speech.wav") == MediaRef(None, "media/speech.wav")
    assert MediaRef.parse("media/speech.wav").is_relative
    assert str(MediaRef.parse("s3://b12/k")) == "s3://b12/k"
    for bad in (
        "",
        "/abs",
        "a/../b",
        "./a",
        "a//b",
        "a/",
        "http://x/y",
        "file:///etc",
        "s3://b",
        "s3://B1/k",
    ):
        with pytest.raises(ValueError):
            MediaRef.parse(bad)


@pytest.mark.parametrize(
    ("manifest_key", "ref", "expected"),
    [
        ("inputs/job 1/job.json", "face.png", ("in", "inputs/job 1/face.png")),
        ("inputs/job 1/job.json", "media/speech.wav", ("in", "inputs/job 1/media/speech.wav")),
        ("inputs/a+b/job.json", "c+d e.wav", ("in", "inputs/a+b/c+d e.wav")),
        ("inputs/élan/ジョブ.json", "顔 ü.png", ("in", "inputs/élan/顔 ü.png")),
        ("job.json", "face.png", ("in", "face.png")),
        ("inputs/folder/", "face.png", ("in", "inputs/folder/face.png")),
        ("", "face.png", ("in", "face.png")),
        ("inputs/x/job.json", "s3://other-bucket/k/face.png", ("other-bucket", "k/face.png")),
    ],
)
def test_media_ref_resolution(manifest_key, ref, expected):
    assert MediaRef.parse(ref).resolve("in", manifest_key) == expected


def test_media_ref_schema_pattern_agrees_with_parser():
    samples = [
        "s3://in-bucket/a/b c+d.png",
        "s3://my.bucket/ü/ジョブ.wav",
        "face.png",
        "media/speech.wav",
        "a:b.png",
        "...png",
        "",
        "/abs",
        "a/../b",
        "..",
        "./a",
        "a//b",
        "a/",
        "a\\b",
        "a\nb",
        "http://x/y",
        "s3://b",
        "s3://B1/k",
        "s3://bucket/",
        "s3://bucket/../k",
    ]
    pattern = re.compile(MEDIA_REF_PATTERN)
    for sample in samples:
        try:
            MediaRef.parse(sample)
            parsed = True
        except ValueError:
            parsed = False
        assert bool(pattern.search(sample)) == parsed, sample


def test_media_ref_round_trips_as_string():
    req = parse_job_request(avatar(inputs={"image": "s3://in-bucket/a b.png", "audio": "x/y.wav"}))
    dumped = req.model_dump(mode="json")
    assert dumped["inputs"]["image"] == "s3://in-bucket/a b.png" and dumped["inputs"]["audio"] == "x/y.wav"
    assert parse_job_request(dumped) == req


# --- records and events ------------------------------------------------------------------------------------


def completed_record() -> JobRecord:
    req = parse_job_request(avatar(callback_id="cb-9", metadata={"user": "u1"}, output={"bucket": "out-b"}))
    record = JobRecord.new("job-1", req, now=T0)
    record.start_step("avatar", backend="lite", now=T0 + timedelta(seconds=2))
    record.set_progress(0.5, "rendering", now=T0 + timedelta(seconds=3))
    record.finish_step("avatar", now=T0 + timedelta(seconds=7))
    outputs = [
        OutputFile(kind="video", bucket="out-b", key="job-1/video.mp4", content_type="video/mp4", bytes=1000),
        OutputFile(
            kind="thumbnail", bucket="out-b", key="job-1/thumbnail.jpg", content_type="image/jpeg", bytes=50
        ),
    ]
    result = JobResult(outputs=outputs, duration_s=3.2, width=480, height=640, fps=25)
    return record.mark_completed(result, now=T0 + timedelta(seconds=8))


def test_record_lifecycle_fields():
    record = completed_record()
    assert (record.task, record.model, record.status, record.progress) == (
        "avatar",
        "lite-avatar",
        "completed",
        1.0,
    )
    assert record.started_at == T0 + timedelta(seconds=2)
    assert record.timings == {"avatar": 5.0, "total": 8.0}
    assert record.steps[0].attempts == 1 and record.steps[0].duration_s == 5.0
    assert record.result.bytes == 1050
    with pytest.raises(ValueError, match="already completed"):
        record.mark_failed(JobError(code=ErrorCode.GENERATION_FAILED, message="late"))
    assert record.status == "completed" and record.error is None


def test_record_round_trips_through_json():
    record = completed_record()
    text = record.model_dump_json()
    assert '"created_at":"2025-03-01T12:00:00Z"' in text
    assert JobRecord.model_validate_json(text) == record
    assert JobRecord.model_validate(json.loads(text)) == record


def test_record_datetimes_are_utc():
    req = parse_job_request(avatar())
    local = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record = JobRecord.new("j", req, now=local)
    assert record.created_at.utcoffset() == timedelta(0) and record.created_at.hour == 12
    assert record.model_dump(mode="json")["created_at"] == "2025-03-01T12:00:00Z"
    with pytest.raises(ValueError):
        JobRecord.new("j", req, now=datetime(2025, 3, 1))  # naive datetimes are ambiguous


def test_record_requires_result_or_error_for_terminal_states():
    data = completed_record().model_dump(mode="json")
    with pytest.raises(ValueError, match="result"):
        JobRecord.model_validate({**data, "result": None})
    with pytest.raises(ValueError, match="error"):
        JobRecord.model_validate({**data, "status": "failed", "result": None})


def test_event_from_completed_record():
    event = JobEvent.from_record(completed_record(), "job.completed", occurred_at=T0)
    assert (event.type, event.status, event.job_id, event.progress) == (
        "job.completed",
        "completed",
        "job-1",
        1.0,
    )
    assert (event.result.bucket, event.result.key) == ("out-b", "job-1/video.mp4")
    assert event.result.thumbnail_key == "job-1/thumbnail.jpg"
    assert event.error is None
    assert (event.callback_id, event.metadata, event.schema_version) == ("cb-9", {"user": "u1"}, "1")
    again = JobEvent.from_record(completed_record(), "job.completed")
    assert again.event_id == event.event_id  # a re-sent event keeps its id
    assert JobEvent.model_validate_json(event.model_dump_json()) == event


def test_event_from_failed_record():
    record = JobRecord.new("job-2", parse_job_request(avatar()), now=T0)
    record.start_step("avatar", now=T0)
    record.mark_failed(
        TalkstackError(ErrorCode.NO_FACE_DETECTED, "no face in face.png", faces=0), step="avatar"
    )
    assert record.step("avatar").status == "failed"
    event = JobEvent.from_record(record, "job.failed")
    assert event.status == "failed" and event.result is None
    assert event.error.code == ErrorCode.NO_FACE_DETECTED and event.error.step == "avatar"
    assert event.error.details == {"faces": 0}
    assert event.model_dump(mode="json")["error"]["code"] == "NO_FACE_DETECTED"


def test_event_type_must_match_record():
    record = completed_record()
    with pytest.raises(ValueError, match="status"):
        JobEvent.from_record(record, "job.failed")
    running = JobRecord.new("job-3", parse_job_request(avatar()), now=T0)
    running.start_step("avatar", now=T0)
    with pytest.raises(ValueError):
        JobEvent.from_record(running, "job.completed")
    assert JobEvent.from_record(running, "job.started").status == "running"


def test_event_requires_result_on_completed_and_error_on_failed():
    base = JobEvent.from_record(completed_record(), "job.completed").model_dump(mode="json")
    with pytest.raises(ValueError, match="result"):
        JobEvent.model_validate({**base, "result": None})
    with pytest.raises(ValueError, match="error"):
        JobEvent.model_validate({**base, "type": "job.failed", "status": "failed", "result": None})
    assert set(EVENT_STATUS) == set(EVENT_TYPES)


def test_unexpected_exception_becomes_generation_failed():
    error = JobError.from_exception(RuntimeError("CUDA out of memory\nat line 3"), step="video")
    assert (
        error.code == ErrorCode.GENERATION_FAILED
        and error.message == "RuntimeError: CUDA out of memory at line 3"
    )


# --- JSON Schemas ------------------------------------------------------------------------------------------


def validator(name: str) -> Draft202012Validator:
    schema = schema_documents()[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


NATIVE_SAMPLES = [
    avatar(options={"model": "infinitetalk", "width": 720, "height": 1280}, output={"filename": "a.mp4"}),
    {
        "task": "avatar",
        "inputs": {"image": "s3://in-bucket/f.png", "text": "Hi"},
        "options": {"voice": {"model": "chatterbox"}},
    },
    {
        "task": "voice",
        "inputs": {"text": "Hello"},
        "options": {"format": "mp3"},
        "notify": {"webhook_url": "https://h.io/x"},
    },
    {
        "task": "video",
        "inputs": {"prompt": "waves"},
        "options": {"aspect": "1:1", "duration_s": 4},
        "job_id": "v_1",
    },
]


@pytest.mark.parametrize("sample", NATIVE_SAMPLES)
def test_request_schema_accepts_native_samples(sample):
    parse_job_request(sample)  # the models accept them too
    errors = list(validator("job-request.schema.json").iter_errors(sample))
    assert errors == []


@pytest.mark.parametrize(
    "sample",
    [
        {"task": "avatar", "inputs": {"audio": "a.wav"}},
        avatar(options={"resolutoin": "720p"}),
        avatar(inputs={"image": "../face.png", "audio": "a.wav"}),
        avatar(options={"width": 641, "height": 360}),
        {"task": "video", "inputs": {"prompt": "x"}, "options": {"model": "sora"}},
        {"task": "painting", "inputs": {}},
        MULTITALK_V0,  # the schema describes the native shape only
    ],
)
def test_request_schema_rejects_invalid(sample):
    assert not validator("job-request.schema.json").is_valid(sample)


def test_record_and_event_dumps_match_their_schemas():
    record = completed_record()
    assert list(validator("job-record.schema.json").iter_errors(record.model_dump(mode="json"))) == []
    event_schema = validator("job-event.schema.json")
    event = JobEvent.from_record(record, "job.completed").model_dump(mode="json")
    assert list(event_schema.iter_errors(event)) == []
    assert not event_schema.is_valid({**event, "result": None})  # completed without result
    assert not event_schema.is_valid({**event, "type": "job.failed", "status": "failed", "result": None})


def test_request_schema_mentions_the_multitalk_v0_manifest():
    assert "legacy" in schema_documents()["job-request.schema.json"]["description"]


# --- nesting depth (issue 15, finding 8) --------------------------------------------------------


TOO_DEEP = ["[" * 100_000, '{"a":' * 40_000, "[" * 33 + "]" * 33, "[{" * 17 + "}]" * 17]


@pytest.mark.parametrize("text", TOO_DEEP)
def test_json_nested_past_the_limit_is_invalid_request_before_any_parser_recurses(text):
    with pytest.raises(TalkstackError) as info:
        load_request_json(text)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert info.value.message == "request: nested deeper than 32 levels of arrays and objects"


def test_json_at_the_limit_and_brackets_inside_strings_are_fine():
    assert load_request_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    # Brackets inside strings (escaped quotes included) are text, not nesting.
    text = json.dumps({"task": "voice", "inputs": {"text": '[[[ "quoted" \\ ' + "{" * 100}})
    assert load_request_json(text)["inputs"]["text"].endswith("{" * 100)
    assert load_request_json(text.encode("utf-16")) == load_request_json(text)


def test_the_depth_scan_is_linear_on_unterminated_strings():
    # A regex that retried from every quote inside an unterminated string would take minutes here.
    with pytest.raises(TalkstackError, match="Unterminated string"):
        load_request_json('"' + '\\"' * 120_000)


def test_an_already_parsed_document_is_held_to_the_same_depth():
    # A direct StartExecution input reaches the validate step as a dict.
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["a"] = node = {}
    with pytest.raises(TalkstackError, match="nested deeper than 32"):
        parse_job_request({"task": "voice", "inputs": {"text": "hi"}, "extra": deep})
