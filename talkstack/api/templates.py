"""Templates over the REST API: the bundled ones, each key's own, and generating a job from one.

A key's own templates are JSON documents in the input bucket at `templates/<key id>/<id>.json`, so
an operator can also drop them there with any S3 client; they are listed with ListObjectsV2 (no
table scan). A key never sees another key's templates: one is answered exactly like a missing one.
A key's template may not take a bundled template's id (the bundled one would hide it, or it the
bundled one).

Generating instantiates the template (talkstack.templates.instantiate) with the caller's variables
into a composition request; media variables are checked first, with the same non-revealing rule as
a request's inputs, and their problems join the template's own in one TEMPLATE_VARIABLES_INVALID
answer. Bundled media (`asset:<name>`) are copied into the input bucket once
(talkstack.pipeline.bundled_assets) and referenced there.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

import talkstack.templates as templates
from talkstack.api.keys import Principal
from talkstack.api.models import TemplateGenerate, TemplateList, TemplateSummary, TemplateView
from talkstack.api.uploads import Uploads
from talkstack.contract.fields import MediaRef
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.bundled_assets import BundledAssets
from talkstack.pipeline.tenancy import TEMPLATES_PREFIX, Namespace
from talkstack.templates.document import MAX_TEMPLATE_BYTES

log = logging.getLogger(__name__)

TEMPLATE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_TEMPLATE_ID = re.compile(TEMPLATE_ID_PATTERN)
MAX_OWN_TEMPLATES = 200
"""At most this many templates per key (each is read to list it)."""
MEDIA_VARIABLE_TYPES = frozenset({"image", "video", "audio", "avatar"})
ASSET_PREFIX = "asset:"
ASSET_NOT_FOUND = "asset_not_found"
"""The problem code of a media variable that does not exist or is not the caller's to read."""


def _not_found(template_id: str) -> TalkstackError:
    # One answer for a missing template and another key's: the text depends only on the id sent.
    return TalkstackError(ErrorCode.NOT_FOUND, f"no template {template_id!r} for this API key")


def _document_json(document: Any) -> dict[str, Any]:
    return json.loads(document.model_dump_json())


def summary(document: Any, source: str) -> TemplateSummary:
    return TemplateSummary(
        id=document.id,
        version=document.version,
        name=document.name,
        description=document.description,
        category=document.category,
        aspect=document.aspect,
        resolution=getattr(document, "resolution", None),
        variables=sorted(document.variables),
        source=source,
    )


def _asset_strings(node: Any) -> Iterator[str]:
    """Every `asset:<name>` string inside a JSON-like value."""
    if isinstance(node, str):
        if node.startswith(ASSET_PREFIX):
            yield node.removeprefix(ASSET_PREFIX)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _asset_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _asset_strings(value)


class TemplateStore:
    """The bundled templates and each key's own (S3: `templates/<key id>/<id>.json`)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    @staticmethod
    def bundled() -> dict[str, Any]:
        return templates.bundled_templates()

    @staticmethod
    def key(owner: str, template_id: str) -> str:
        return f"{TEMPLATES_PREFIX}{owner}/{template_id}.json"

    def _own_ids(self, owner: str) -> list[str]:
        prefix = f"{TEMPLATES_PREFIX}{owner}/"
        ids: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name.endswith(".json") and _TEMPLATE_ID.match(name.removesuffix(".json")):
                    ids.append(name.removesuffix(".json"))
            if len(ids) >= MAX_OWN_TEMPLATES:
                break
        return sorted(ids)[:MAX_OWN_TEMPLATES]

    def _read_own(self, owner: str, template_id: str) -> Any | None:
        """The key's template, None if it has none by that id; TEMPLATE_INVALID for a stored document
        that does not parse (an operator's drop: the answer lists its problems)."""
        if not _TEMPLATE_ID.match(template_id):
            return None
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key(owner, template_id))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        raw = obj["Body"].read(MAX_TEMPLATE_BYTES + 1)
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise TalkstackError(
                ErrorCode.TEMPLATE_INVALID,
                f"template {template_id!r} is over {MAX_TEMPLATE_BYTES // 1024} KiB; shorten it",
            )
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise TalkstackError(
                ErrorCode.TEMPLATE_INVALID, f"template {template_id!r} is not JSON: {exc}"
            ) from exc
        document = templates.parse_template(data)
        if document.id != template_id:
            raise TalkstackError(
                ErrorCode.TEMPLATE_INVALID,
                f"template {template_id!r} is stored under its id, but its document says id {document.id!r}",
            )
        return document

    def get(self, owner: str, template_id: str) -> tuple[Any, str]:
        """(document, "bundled" | "own"); NOT_FOUND for a missing id and for another key's."""
        bundled = self.bundled()
        if template_id in bundled:
            return bundled[template_id], "bundled"
        document = self._read_own(owner, template_id)
        if document is None:
            raise _not_found(template_id)
        return document, "own"

    def list(self, owner: str) -> TemplateList:
        found = [summary(doc, "bundled") for _, doc in sorted(self.bundled().items())]
        for template_id in self._own_ids(owner):
            try:
                document = self._read_own(owner, template_id)
            except TalkstackError as exc:  # a broken drop must not hide the others; GET shows why
                log.warning("template %s of key %s does not parse: %s", template_id, owner, exc.message)
                continue
            if document is not None and document.id not in self.bundled():
                found.append(summary(document, "own"))
        return TemplateList(templates=found)

    def put(self, owner: str, template_id: str, data: Any) -> tuple[Any, bool]:
        """Store the key's template (parsed and validated first); (document, whether it is new)."""
        if template_id in self.bundled():
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"{template_id!r} is a bundled template's id; give your template another id",
            )
        if not isinstance(data, dict):
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, "request: expected a template document (JSON object)"
            )
        if data.get("id", template_id) != template_id:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"id: the document says {data['id']!r} but the path says {template_id!r}; make them equal",
                field="id",
            )
        document = templates.parse_template({**data, "id": template_id})
        body = document.model_dump_json(exclude_none=True).encode()
        if len(body) > MAX_TEMPLATE_BYTES:
            raise TalkstackError(
                ErrorCode.TEMPLATE_INVALID,
                f"the template is over {MAX_TEMPLATE_BYTES // 1024} KiB; shorten it",
            )
        existed = self._exists(owner, template_id)
        if not existed and len(self._own_ids(owner)) >= MAX_OWN_TEMPLATES:
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"this key has {MAX_OWN_TEMPLATES} templates, the most it may keep; delete one first",
            )
        self.s3.put_object(
            Bucket=self.bucket, Key=self.key(owner, template_id), Body=body, ContentType="application/json"
        )
        return document, not existed

    def _exists(self, owner: str, template_id: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key(owner, template_id))
            return True
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, owner: str, template_id: str) -> None:
        if template_id in self.bundled():
            raise TalkstackError(
                ErrorCode.CONFLICT, f"{template_id!r} is a bundled template; only a key's own can be deleted"
            )
        if not _TEMPLATE_ID.match(template_id) or not self._exists(owner, template_id):
            raise _not_found(template_id)
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(owner, template_id))

    def view(self, document: Any, source: str) -> TemplateView:
        return TemplateView(source=source, template=_document_json(document))


class TemplateInstances:
    """A template plus a caller's variables → a composition request body (not yet submitted)."""

    def __init__(self, s3: Any, uploads: Uploads, bundled: BundledAssets, config: Any) -> None:
        self.s3, self.uploads, self.bundled, self.config = s3, uploads, bundled, config

    def composition(self, principal: Principal, document: Any, request: TemplateGenerate) -> dict[str, Any]:
        variables = dict(request.variables)
        resolved, problems = self._resolve_media(principal, document, variables)
        # A media variable that is not the caller's is left out of instantiate (which would call it
        # missing, or of the wrong type): its own problem says what is wrong.
        unusable = _problem_names(problems)
        usable = {name: value for name, value in resolved.items() if name not in unusable}
        # Bundled media the template and its media variables name, copied into the input bucket
        # together (text is never a file, whatever it says; the example is not rendered here).
        media = [name for name, v in document.variables.items() if v.type in MEDIA_VARIABLE_TYPES]
        names = [
            *_asset_strings(_document_json(document).get("composition")),
            *_asset_strings([_or(usable.get(name), document.variables[name].default) for name in media]),
        ]
        # (a name that is not bundled is left to instantiate, which names it as a problem)
        refs = self.bundled.ensure([n for n in names if _is_bundled(n)], self._asset_path)

        def resolve_asset(name: str) -> str:
            name = name.removeprefix(ASSET_PREFIX)
            ref = refs.get(name) or self.bundled.ensure([name], self._asset_path)[name]
            return str(ref)

        try:
            body = templates.instantiate(document, usable, resolve_asset=resolve_asset)
        except TalkstackError as exc:
            if exc.code != ErrorCode.TEMPLATE_VARIABLES_INVALID:
                raise
            theirs = [p for p in _problems_of(exc) if p.get("variable") not in unusable]
            raise _variables_invalid(document.id, [*theirs, *problems]) from exc
        if problems:
            raise _variables_invalid(document.id, problems)
        body = dict(body)
        body["task"] = "composition"
        body["template"] = {"id": document.id, "version": document.version, "variables": variables}
        for name in ("preview", "output", "notify", "callback_id", "metadata", "consent"):
            if name in request.model_fields_set:
                value = getattr(request, name)
                dump = getattr(value, "model_dump_json", None)
                body[name] = json.loads(dump()) if dump is not None else value
        return body

    @staticmethod
    def _asset_path(name: str) -> Any:
        return templates.asset_path(name)

    def _resolve_media(
        self, principal: Principal, document: Any, variables: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """(the variables with upload ids turned into the uploads' `s3://` refs, which end in the
        file's name so their type shows; a problem for each media variable whose reference does not
        exist or is not the caller's, worded alike for both: no answer says which). Malformed values
        are left to instantiate."""
        namespace = Namespace.for_key(principal.key_id, self.config)
        resolved = dict(variables)
        problems = []
        for name, value in variables.items():
            declared = document.variables.get(name)
            if declared is None or declared.type not in MEDIA_VARIABLE_TYPES or not isinstance(value, str):
                continue
            readable = self._readable(principal, namespace, value)
            if readable is not None:
                resolved[name] = readable
            else:
                problems.append(
                    {
                        "variable": name,
                        "code": ASSET_NOT_FOUND,
                        "message": f"{name}: {value} does not exist or this API key may not read it",
                    }
                )
        return resolved, problems

    def _readable(self, principal: Principal, namespace: Namespace, value: str) -> str | None:
        """The value to instantiate with (an upload id resolved), or None: not the caller's to read."""
        if value.startswith(ASSET_PREFIX):
            return value  # a bundled file: instantiate reports a name that is not one
        try:
            ref = MediaRef.parse(value)
        except ValueError:
            return value  # not a reference at all: instantiate reports it as the wrong type
        if ref.is_relative:
            if not ref.key.startswith("upl_"):
                return value  # instantiate (or the request's own check) says what is wrong with it
            upload = self.uploads.get(principal, ref.key)
            if upload is None:
                return None
            ref = MediaRef(upload.bucket, upload.key)
        if not namespace.may_read(ref):
            return None  # before any HeadObject: no existence oracle
        try:
            self.s3.head_object(Bucket=ref.bucket, Key=ref.key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "403", "AccessDenied"):
                return None
            raise
        return str(ref)


def _or(given: Any, default: Any) -> Any:
    """The value instantiate uses: the given one, or the default when none (or null) is given."""
    return default if given is None else given


def _is_bundled(name: str) -> bool:
    try:
        templates.asset_path(name)
    except TalkstackError:
        return False
    return True


def _problem_names(problems: list[dict[str, str]]) -> set[str]:
    return {p["variable"] for p in problems}


def _problems_of(exc: TalkstackError) -> list[dict[str, Any]]:
    listed = exc.details.get("problems")
    if isinstance(listed, list):
        return list(listed)
    return [{"variable": exc.details.get("variable", ""), "code": "invalid", "message": exc.message}]


def _variables_invalid(template_id: str, problems: list[dict[str, Any]]) -> TalkstackError:
    # Worded as talkstack.templates words its own, so both read alike.
    listed = "; ".join(str(p.get("message")) for p in problems)
    noun = "problem" if len(problems) == 1 else "problems"
    return TalkstackError(
        ErrorCode.TEMPLATE_VARIABLES_INVALID,
        f"template {template_id}: {len(problems)} {noun} with the variables: {listed}",
        problems=problems,
    )


def parse_generate(raw: Any) -> TemplateGenerate:
    from talkstack.contract.parse import invalid_request

    if raw is None or raw == "":
        raw = {}
    try:
        return TemplateGenerate.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from exc
