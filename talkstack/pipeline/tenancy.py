"""Tenant namespaces: what a job may read and where it may publish, decided in one place.

Every entry point asks `Namespace.for_source(job source, config)` before any S3 call:

- an **API job** belongs to its key K. It reads K's uploads (`s3://<input>/uploads/K/…`, or by
  `upl_` id), K's own outputs (`s3://<output>/tenants/K/…`, and under K's write grants) and the
  locations TALKSTACK_READ_GRANTS grants to K or to `*`; it publishes under `tenants/K/` in the
  output bucket (or under a write grant), whatever `output.prefix` says. Every key may also read
  the bundled template media the API copies into the input bucket (`assets/bundled/<digest>/<file>`,
  exactly those keys: talkstack.pipeline.bundled_assets).
- an **S3 drop** `inputs/<name>/job.json` belongs to its folder: it reads that folder (and its
  subfolders) plus the grants to `drop:<name>` / `drop:*`. Outputs keep the manifest's layout
  (whoever may drop manifests is trusted with the output bucket, and publishing never overwrites
  another job's object anyway: outputs.publish), except the API keys' `tenants/` folder.
- a **direct StartExecution** is an operator's (the IAM principals allowed to start the state
  machine): today's rules, the readable and writable buckets.

Anything a namespace may not read gets the same answer as a missing object (`input_not_found`),
before any HeadObject, so the answer says nothing about what exists elsewhere. No message lists
the buckets the stack may use (only the one the caller named).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from talkstack.contract.fields import MediaRef, client_field
from talkstack.contract.record import JobSource
from talkstack.contract.request import JobRequestBase, OutputSpec
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.bundled_assets import BUNDLED_PREFIX, is_bundled_key
from talkstack.pipeline.config import TENANTS_AREA, UPLOADS_AREA, PipelineConfig, S3Grant

UPLOADS_PREFIX = UPLOADS_AREA
"""Where the API stores a key's uploads in the input bucket: `uploads/<key id>/<upload id>/<file>`."""
TENANTS_PREFIX = TENANTS_AREA
"""Where the API publishes a key's outputs in the output bucket: `tenants/<key id>/…`."""
TEMPLATES_PREFIX = "templates/"
"""Where a key's own templates live in the input bucket: `templates/<key id>/<template id>.json`
(no key reads them as media: they are outside every namespace)."""

OwnerKind = Literal["api", "drop", "operator"]
WHO: dict[OwnerKind, str] = {"api": "this API key", "drop": "this drop folder", "operator": "this stack"}


@dataclass(frozen=True)
class Area:
    """Objects under `prefix` in `bucket` ("" = the whole bucket); `nested=False` keeps out subfolders."""

    bucket: str
    prefix: str
    nested: bool = True
    exact: Callable[[str], bool] | None = None
    """When set, only the keys it accepts (a narrow area inside a prefix nobody else reads)."""

    def holds(self, bucket: str, key: str) -> bool:
        if bucket != self.bucket or not key.startswith(self.prefix):
            return False
        if self.exact is not None and not self.exact(key):
            return False
        return self.nested or "/" not in key[len(self.prefix) :]

    @classmethod
    def of(cls, grant: S3Grant) -> Area:
        return cls(grant.bucket, grant.prefix)


def input_not_found(field: str, ref: object, kind: OwnerKind) -> TalkstackError:
    """The one answer for a missing input and for one the namespace may not read: its text depends
    only on what the caller sent, never on what exists."""
    return TalkstackError(
        ErrorCode.INPUT_NOT_FOUND,
        f"{field}: {ref} does not exist or {WHO[kind]} may not read it",
        field=field,
        ref=str(ref),
    )


@dataclass(frozen=True)
class Namespace:
    kind: OwnerKind
    owner: str
    """The API key id, the drop folder (`inputs/<name>/`), or "operator"."""
    readable: tuple[Area, ...]
    """Where the job may read (an operator: the whole of each readable bucket)."""
    config: PipelineConfig

    @classmethod
    def for_source(cls, source: JobSource, config: PipelineConfig) -> Namespace:
        if source.kind == "api":
            if source.api_key_id is None:
                raise TalkstackError(ErrorCode.INVALID_REQUEST, "source: an api job names its api_key_id")
            return cls.for_key(source.api_key_id, config)
        if source.kind == "s3":
            return cls.for_drop(source.bucket or config.input_bucket, source.key or "", config)
        return cls("operator", "operator", tuple(Area(b, "") for b in config.allowed_read_buckets), config)

    @classmethod
    def for_key(cls, key_id: str, config: PipelineConfig) -> Namespace:
        own = (
            Area(config.input_bucket, f"{UPLOADS_PREFIX}{key_id}/"),
            Area(config.output_bucket, f"{TENANTS_PREFIX}{key_id}/"),
            # Bundled template media: the same public files for every key, and nothing else there.
            Area(config.input_bucket, BUNDLED_PREFIX, exact=is_bundled_key),
        )
        written = tuple(Area(g.bucket, _grant_root(g, key_id)) for g in _granted(config.write_grants, key_id))
        granted = tuple(Area.of(g) for g in _granted(config.read_grants, key_id))
        return cls("api", key_id, own + written + granted, config)

    @classmethod
    def for_drop(cls, bucket: str, manifest_key: str, config: PipelineConfig) -> Namespace:
        folder = manifest_key.rpartition("/")[0] + "/" if "/" in manifest_key else ""
        name = folder.removeprefix(config.input_prefix).strip("/")
        # A manifest right at the input prefix (inputs/job.json) would otherwise own every drop
        # folder: it reads only the files beside it.
        own = Area(bucket, folder, nested=bool(name))
        grants = (g for g in config.read_grants if g.grantee in (f"drop:{name}", "drop:*"))
        return cls("drop", folder, (own, *(Area.of(g) for g in grants)), config)

    # --- reading -------------------------------------------------------------------------------

    def may_read(self, ref: MediaRef) -> bool:
        """Whether an absolute ref is this namespace's to read (no S3 call)."""
        assert ref.bucket is not None, "resolve relative refs first"
        return any(area.holds(ref.bucket, ref.key) for area in self.readable)

    def check_reads(self, request: JobRequestBase) -> None:
        """Refuse any media input outside the namespace, before anything is asked of S3."""
        for path, ref in request.referenced_media().items():
            if self.may_read(ref):
                continue
            field = client_field(path)
            if self.kind == "operator":  # the operator's own configuration: say which bucket, and how
                raise TalkstackError(
                    ErrorCode.INPUT_FORBIDDEN,
                    f"{field}: this stack may not read bucket {ref.bucket!r}; an operator adds it to "
                    "TALKSTACK_READABLE_BUCKETS",
                    field=field,
                    bucket=ref.bucket,
                )
            raise input_not_found(field, ref, self.kind)

    def not_found(self, field: str, ref: object) -> TalkstackError:
        return input_not_found(field, ref, self.kind)

    # --- publishing ----------------------------------------------------------------------------

    def place_output(self, request: JobRequestBase, job_id: str) -> JobRequestBase:
        """An API request's `output` → the real bucket and prefix inside the key's namespace:
        `<root><prefix>[/<job id>]/<filename>`, the root being `tenants/<key id>/` in the output
        bucket (or a write grant's). The stored request carries them, so finalize, the job record
        and GET /v1/jobs all see where the files really are. Other namespaces keep `output` as is."""
        if self.kind != "api":
            return request
        spec = request.output
        bucket, root = self._output_root(spec.bucket)
        if spec.prefix is None:
            relative = job_id
        elif spec.unique_suffix:
            relative = f"{spec.prefix}/{job_id}" if spec.prefix else job_id
        else:
            relative = spec.prefix
        try:
            placed = OutputSpec.model_validate(
                {"bucket": bucket, "prefix": f"{root}{relative}", "filename": spec.filename}
            )
        except ValidationError as exc:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"output.prefix: too long once placed under this key's output folder ({exc.error_count()} "
                "error(s)); use a shorter prefix",
            ) from exc
        return request.model_copy(update={"output": placed})

    def check_output(self, request: JobRequestBase) -> None:
        """Where the request publishes is this namespace's to write (no S3 call)."""
        spec = request.output
        if self.kind == "api":
            # Placed by the API (place_output); an execution started with an api source by other
            # means must already point inside the key's namespace.
            _, root = self._output_root(spec.bucket)
            if spec.bucket is None or spec.prefix is None or not f"{spec.prefix}/".startswith(root):
                raise TalkstackError(
                    ErrorCode.INVALID_REQUEST,
                    "output: an API job publishes under its key's output folder; submit it through the API",
                )
            return
        if spec.bucket is not None and spec.bucket not in self.config.allowed_write_buckets:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"output.bucket: this stack may not publish to {spec.bucket!r}; omit output.bucket to "
                "use the stack's output bucket, or an operator adds it to TALKSTACK_WRITABLE_BUCKETS",
            )
        if self.kind != "drop":
            return
        # API keys read their folders back as their own outputs (the output bucket's tenants/, and
        # their write grants): a drop must not plant files there.
        bucket = spec.bucket or self.config.output_bucket
        # "" for the bucket root and for the default job-id folder (a job id has no '/'), which meet
        # a key's area only when that area is the whole bucket: "" starts with no other area.
        folder = f"{spec.prefix}/" if spec.prefix else ""
        areas = [(self.config.output_bucket, TENANTS_PREFIX)]
        areas += [
            (g.bucket, f"{g.prefix}{TENANTS_PREFIX}" if g.grantee == "*" else g.prefix)
            for g in self.config.write_grants
        ]
        if any(bucket == b and folder.startswith(area) for b, area in areas):
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                "output.prefix: that folder holds the API keys' outputs; choose another prefix",
            )

    def output_root(self, bucket: str | None) -> tuple[str, str]:
        """(bucket, root prefix) an API key's outputs in `bucket` go under (None: the default)."""
        return self._output_root(bucket)

    def _output_root(self, bucket: str | None) -> tuple[str, str]:
        """(bucket, root prefix ending in '/') an API key publishes to in `bucket` (None: the default)."""
        if bucket is None or bucket == self.config.output_bucket:
            return self.config.output_bucket, f"{TENANTS_PREFIX}{self.owner}/"
        for grant in _granted(self.config.write_grants, self.owner):
            if grant.bucket == bucket:
                return bucket, _grant_root(grant, self.owner)
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            "output.bucket: this API key may not publish to that bucket; omit output.bucket (outputs go "
            "to this key's folder of the output bucket) or ask the operator for a write grant",
        )


def _granted(grants: list[S3Grant], key_id: str) -> list[S3Grant]:
    """The grants that apply to an API key: its own first, then the ones to every key."""
    return [g for g in grants if g.grantee == key_id] + [g for g in grants if g.grantee == "*"]


def _grant_root(grant: S3Grant, key_id: str) -> str:
    """A key's own grant is its folder; a grant to every key is shared, so each key gets a subfolder."""
    return grant.prefix if grant.grantee == key_id else f"{grant.prefix}{TENANTS_PREFIX}{key_id}/"
