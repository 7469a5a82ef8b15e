"""Templates through the API service (free of HTTP) on moto's in-process AWS: the bundled ones and a
key's own (stored in the input bucket, invisible to other keys), generating a composition from one
(every variable problem at once, media that is not the caller's, bundled media copied into the
input bucket), and the full render of a preview. The bundled templates are talkstack.templates'
real ones.

Where a test is about what a template or a preview turns into, it records what the service
submits (`submitted`) instead of submitting; tests/integration/test_templates_http.py submits for
real."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import talkstack.templates as templates
from talkstack.api.keys import Principal
from talkstack.api.models import JobAccepted, JobLinks
from talkstack.api.service import ApiService
from talkstack.contract.composition import CompositionRequest
from talkstack.contract.fields import MediaRef
from talkstack.contract.record import JobRecord, JobSource, utc_now
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.bundled_assets import BUNDLED_PREFIX, BundledAssets, bundled_key, is_bundled_key
from talkstack.pipeline.tenancy import Namespace
from tests.support.steps import INPUT, OUTPUT
from tests.unit.api.api_env import A, B

SOCIAL = "social-ad"


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def own_document(template_id: str) -> dict[str, Any]:
    """A key's own template: the bundled social ad under another id and name."""
    data = json.loads(templates.bundled_templates()[SOCIAL].model_dump_json())
    return {**data, "id": template_id, "name": "Our launch ad"}


@pytest.fixture
def submitted(api: ApiService, monkeypatch) -> list[dict[str, Any]]:
    """What the service submits, in place of the submission itself (the pipeline's part)."""
    calls: list[dict[str, Any]] = []

    def submit(principal: Principal, task: str, body: Any, key: str | None, files=()) -> Any:
        calls.append({"principal": principal, "task": task, "body": body, "key": key})
        accepted = JobAccepted(
            job_id=f"composition-{len(calls):016x}",
            task="composition",
            status="queued",
            created_at=utc_now(),
            links=JobLinks(self="/", cancel="/"),
        )
        return accepted, False

    monkeypatch.setattr(api, "submit", submit)
    return calls


def test_bundled_templates_are_listed_and_shown_with_their_variables(api):
    bundled = templates.bundled_templates()
    listed = {t.id: t for t in api.list_templates(A).templates}

    assert set(listed) == set(bundled) and {t.source for t in listed.values()} == {"bundled"}
    social = listed[SOCIAL]
    assert (social.aspect, social.version) == (bundled[SOCIAL].aspect, bundled[SOCIAL].version)
    assert social.variables == sorted(bundled[SOCIAL].variables)
    shown = api.get_template(A, SOCIAL)
    assert shown.source == "bundled"
    assert shown.template["variables"]["headline"]["type"] == "text"
    assert shown.template["example"] == bundled[SOCIAL].example


def test_a_keys_own_template_is_stored_in_s3_and_is_nobody_elses(aws, api):
    view, created = api.put_template(A, "launch-ad", own_document("launch-ad"))
    assert created and view.source == "own" and view.template["name"] == "Our launch ad"
    stored = json.loads(
        aws.s3.get_object(Bucket=INPUT, Key=f"templates/{A.key_id}/launch-ad.json")["Body"].read()
    )
    assert stored["id"] == "launch-ad"

    assert {t.id: t.source for t in api.list_templates(A).templates}["launch-ad"] == "own"
    assert "launch-ad" not in {t.id for t in api.list_templates(B).templates}
    # Another key's template and a missing one: the same answer, word for word (but the id).
    foreign = refusal(lambda: api.get_template(B, "launch-ad"))
    missing = refusal(lambda: api.get_template(B, "launch-ae"))
    assert foreign.code == missing.code == ErrorCode.NOT_FOUND
    assert foreign.message.replace("launch-ad", "X") == missing.message.replace("launch-ae", "X")
    assert refusal(lambda: api.delete_template(B, "launch-ad")).code == ErrorCode.NOT_FOUND
    assert refusal(lambda: api.generate_from_template(B, "launch-ad", {}, None)).code == ErrorCode.NOT_FOUND

    _, created = api.put_template(A, "launch-ad", {**own_document("launch-ad"), "version": 2})
    assert not created and api.get_template(A, "launch-ad").template["version"] == 2
    api.delete_template(A, "launch-ad")
    assert refusal(lambda: api.get_template(A, "launch-ad")).code == ErrorCode.NOT_FOUND


def test_an_operator_can_drop_a_keys_template_into_s3(aws, api):
    body = json.dumps(own_document("dropped-ad")).encode()
    aws.s3.put_object(Bucket=INPUT, Key=f"templates/{B.key_id}/dropped-ad.json", Body=body)
    aws.s3.put_object(Bucket=INPUT, Key=f"templates/{B.key_id}/broken.json", Body=b'{"id": "broken"}')

    assert "dropped-ad" in {t.id for t in api.list_templates(B).templates}  # the broken one is left out
    assert api.get_template(B, "dropped-ad").source == "own"
    broken = refusal(lambda: api.get_template(B, "broken"))
    assert broken.code == ErrorCode.TEMPLATE_INVALID


def test_bad_templates_and_bundled_ids_are_refused(api):
    clash = refusal(lambda: api.put_template(A, SOCIAL, own_document(SOCIAL)))
    assert clash.code == ErrorCode.CONFLICT and "bundled" in clash.message
    assert refusal(lambda: api.delete_template(A, SOCIAL)).code == ErrorCode.CONFLICT
    mismatch = refusal(lambda: api.put_template(A, "mine", own_document("other")))
    assert mismatch.code == ErrorCode.INVALID_REQUEST and "'other'" in mismatch.message
    document = own_document("mine")
    document["composition"]["scenes"][0]["source"]["title"] = "{{not_declared}}"  # type: ignore[index]
    invalid = refusal(lambda: api.put_template(A, "mine", {**document, "version": 0}))
    assert invalid.code == ErrorCode.TEMPLATE_INVALID
    assert refusal(lambda: api.get_template(A, "mine")).code == ErrorCode.NOT_FOUND  # nothing stored


def test_every_variable_problem_comes_back_at_once_with_media_that_is_not_the_callers(aws, api, submitted):
    # B's real upload and a missing one: neither is A's to read, and both read alike.
    foreign = f"s3://{INPUT}/uploads/{B.key_id}/upl_bbbbbbbbbbbbbbbbbbbbbbbb/photo.png"
    aws.s3.put_object(Bucket=INPUT, Key=foreign.removeprefix(f"s3://{INPUT}/"), Body=b"png")
    variables = {
        "script": "Hello there.",  # headline (required) left out
        "no_such_thing": "x",
        "brand_colour": "purple",
        "presenter": foreign,
        "background": "upl_aaaaaaaaaaaaaaaaaaaaaaaa.png",
    }
    error = refusal(lambda: api.generate_from_template(A, SOCIAL, {"variables": variables}, None))

    assert error.code == ErrorCode.TEMPLATE_VARIABLES_INVALID
    problems = {(p["variable"], p["code"]) for p in error.details["problems"]}
    assert {
        ("headline", "missing"),
        ("no_such_thing", "unknown"),
        ("brand_colour", "wrong_type"),
        ("presenter", "asset_not_found"),
        ("background", "asset_not_found"),
    } <= problems
    messages = {p["variable"]: p["message"] for p in error.details["problems"]}
    assert messages["presenter"] == f"presenter: {foreign} does not exist or this API key may not read it"
    assert messages["background"].endswith("does not exist or this API key may not read it")
    assert submitted == []


def test_a_generated_composition_names_its_template_and_reads_bundled_media_from_the_input_bucket(
    aws, api, submitted
):
    example = templates.bundled_templates()[SOCIAL].example
    api.generate_from_template(A, SOCIAL, {"variables": example, "preview": True}, "retry-1")

    (call,) = submitted
    assert (call["task"], call["key"]) == ("composition", "retry-1")
    request = CompositionRequest.model_validate(call["body"])
    assert request.preview and request.template is not None
    assert (request.template.id, request.template.variables) == (SOCIAL, example)
    refs = request.referenced_media()
    assert refs and all(r.bucket == INPUT and is_bundled_key(r.key) for r in refs.values())
    # The presenter is the bundled portrait, copied byte for byte, and every key may read it.
    portrait = templates.asset_path("samples/portrait.png")
    (photo,) = [r for path, r in refs.items() if path.endswith("inputs.image")]
    assert photo.key == bundled_key(portrait)
    assert aws.s3.get_object(Bucket=INPUT, Key=photo.key)["Body"].read() == portrait.read_bytes()
    assert Namespace.for_key(B.key_id, api.config).may_read(photo)


def test_bundled_media_are_uploaded_once(aws):
    assets = BundledAssets(aws.s3, INPUT)
    names = ["samples/portrait.png", "music-loop.m4a"]
    first = assets.ensure(names, templates.asset_path)
    stamps = {n: aws.s3.head_object(Bucket=INPUT, Key=r.key)["LastModified"] for n, r in first.items()}
    puts: list[str] = []
    aws.s3.meta.events.register("before-call.s3.PutObject", lambda **kw: puts.append(kw["params"]["Key"]))

    again = assets.ensure(names, templates.asset_path)

    assert again == first and puts == []
    assert {
        n: aws.s3.head_object(Bucket=INPUT, Key=r.key)["LastModified"] for n, r in again.items()
    } == stamps
    assert aws.s3.head_object(Bucket=INPUT, Key=first["music-loop.m4a"].key)["ContentType"] == "audio/mp4"


def test_keys_read_exactly_the_bundled_media_and_nothing_else_under_assets(api):
    namespace = Namespace.for_key(A.key_id, api.config)
    digest = "0123456789abcdef"
    assert namespace.may_read(MediaRef(INPUT, f"{BUNDLED_PREFIX}{digest}/portrait.png"))
    for key in (
        f"{BUNDLED_PREFIX}{digest}/sub/portrait.png",  # a deeper path
        f"{BUNDLED_PREFIX}{digest}/../../uploads/{B.key_id}/upl_x/photo.png",  # a path trick
        f"{BUNDLED_PREFIX}{digest}/..",
        f"{BUNDLED_PREFIX}0123456789ABCDEF/portrait.png",  # not a digest this code makes
        f"{BUNDLED_PREFIX}portrait.png",
        "assets/other/portrait.png",
        f"templates/{B.key_id}/launch-ad.json",
        f"uploads/{B.key_id}/upl_bbbbbbbbbbbbbbbbbbbbbbbb/photo.png",
    ):
        assert not namespace.may_read(MediaRef(INPUT, key)), key
    assert not namespace.may_read(MediaRef(OUTPUT, f"{BUNDLED_PREFIX}{digest}/portrait.png"))


def _preview_record(api: ApiService, owner: str, job_id: str, preview: bool = True) -> JobRecord:
    """A composition job as the API stores it (output placed under the key's folder)."""
    example = templates.bundled_templates()[SOCIAL].example
    body = templates.instantiate(
        templates.bundled_templates()[SOCIAL], example, resolve_asset=lambda n: f"s3://{INPUT}/x/{n}"
    )
    request = CompositionRequest.model_validate({**body, "preview": preview})
    request = Namespace.for_key(owner, api.config).place_output(request, job_id)
    record = JobRecord.new(job_id, request)  # type: ignore[arg-type]
    record.source = JobSource(kind="api", api_key_id=owner)
    api.svc.store.create(record)
    return record


def test_a_preview_renders_in_full_as_a_new_job_with_the_same_request(api, submitted):
    record = _preview_record(api, A.key_id, "composition-00000000000000aa")

    api.render_job(A, record.job_id, "full-1")

    (call,) = submitted
    assert (call["task"], call["key"]) == ("composition", "full-1")
    body = call["body"]
    assert body["preview"] is False and "job_id" not in body
    assert "output" not in body or body["output"].get("prefix") is None  # a folder of its own job id
    again = CompositionRequest.model_validate(body)
    assert again.scenes == record.request.scenes and again.template == record.request.template
    assert api.get_job(A, record.job_id).preview  # what a client sees before it renders in full


def test_only_a_callers_unfailed_preview_renders(api, submitted):
    preview = _preview_record(api, A.key_id, "composition-00000000000000bb")
    assert refusal(lambda: api.render_job(B, preview.job_id, None)).code == ErrorCode.NOT_FOUND
    full = _preview_record(api, A.key_id, "composition-00000000000000cc", preview=False)
    not_preview = refusal(lambda: api.render_job(A, full.job_id, None))
    assert not_preview.code == ErrorCode.CONFLICT and "preview: true" in not_preview.message
    api.svc.store.update(
        preview.job_id,
        lambda r: r.mark_failed(TalkstackError(ErrorCode.GENERATION_FAILED, "x"), step="finalize"),
    )
    assert refusal(lambda: api.render_job(A, preview.job_id, None)).code == ErrorCode.CONFLICT
    assert submitted == []


def _unsaved(api: ApiService, owner: str, job_id: str, preview: bool) -> JobRecord:
    body = templates.instantiate(
        templates.bundled_templates()[SOCIAL],
        templates.bundled_templates()[SOCIAL].example,
        resolve_asset=lambda n: f"s3://{INPUT}/x/{n}",
    )
    request = CompositionRequest.model_validate({**body, "preview": preview})
    record = JobRecord.new(job_id, request)  # type: ignore[arg-type]
    record.source = JobSource(kind="api", api_key_id=owner)
    return record


def test_a_preview_holds_no_gpu_task_so_it_runs_while_the_keys_gpu_tasks_are_taken(api):
    # A parallel job takes every GPU task the tier has (pro: 8, in 5 concurrent jobs).
    api.admission.admit(A, _unsaved(api, A.key_id, "composition-0000000000000001", False), True, 100)
    refused = refusal(
        lambda: api.admission.admit(A, _unsaved(api, A.key_id, "composition-0000000000000002", False))
    )
    assert refused.code == ErrorCode.RATE_LIMITED and refused.details["limit"] == "gpu_tasks"

    preview = _unsaved(api, A.key_id, "composition-0000000000000003", True)
    assert api.admission.admit(A, preview, gpu=False) == 0
    assert preview.source is not None and preview.source.gpu_slots is None
    live, _ = api.admission.active(A)
    assert live == {"composition-0000000000000001": A.limits.gpu_tasks, preview.job_id: 0}


def test_usage_counts_previews_and_never_their_gpu_seconds(api):
    from talkstack.contract.record import StepRecord

    for job_id, preview in (("composition-00000000000000f1", True), ("composition-00000000000000f2", False)):
        record = _unsaved(api, A.key_id, job_id, preview)
        # The same GPU step on both: only the full render's counts.
        record.steps = [StepRecord(name="avatar", status="completed", model="multitalk", duration_s=10.0)]
        api.svc.store.create(record)

    usage = api.usage(A, "day", None, None)

    assert (usage.totals.jobs, usage.totals.previews, usage.totals.gpu_seconds) == (2, 1, 10.0)


def test_erasing_a_keys_data_removes_its_templates_and_no_one_elses(aws, api):
    api.put_template(A, "launch-ad", own_document("launch-ad"))
    api.put_template(B, "launch-ad", own_document("launch-ad"))

    receipt = api.erase_data(A)

    assert f"templates/{A.key_id}/launch-ad.json" in {o.key for o in receipt.objects if o.kind == "templates"}
    assert refusal(lambda: api.get_template(A, "launch-ad")).code == ErrorCode.NOT_FOUND
    assert api.get_template(B, "launch-ad").source == "own"


def test_a_text_variable_naming_a_bundled_file_stays_text_and_copies_nothing(aws, api, submitted):
    # Only the files the render uses reach the input bucket: the template's own and its media
    # variables' (here the default gradient, portrait and music); a headline is text, whatever it says.
    example = templates.bundled_templates()[SOCIAL].example
    variables = {**example, "headline": "asset:news-picture.jpg"}

    api.generate_from_template(A, SOCIAL, {"variables": variables}, None)

    request = CompositionRequest.model_validate(submitted[0]["body"])
    assert request.scenes[0].overlays[0].text == "asset:news-picture.jpg"
    copied = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=INPUT, Prefix=BUNDLED_PREFIX)["Contents"]}
    assert bundled_key(templates.asset_path("news-picture.jpg")) not in copied
    assert {r.key for r in request.referenced_media().values()} <= copied


def test_every_bundled_file_a_render_uses_is_copied_in_one_batch(api, submitted, monkeypatch):
    # An optional media variable sent as null takes its default: that file is in the first batch
    # too, not copied afterwards on its own.
    batches: list[list[str]] = []
    ensure = api.instances.bundled.ensure

    def counted(names, path_of):
        names = list(names)
        batches.append(names)
        return ensure(names, path_of)

    monkeypatch.setattr(api.instances.bundled, "ensure", counted)
    example = templates.bundled_templates()[SOCIAL].example
    api.generate_from_template(A, SOCIAL, {"variables": {**example, "music": None}}, None)

    assert len(batches) == 1 and "music-loop.m4a" in batches[0]
