"""Error codes shared by every entry point (CLI, S3 drop, API, Step Functions).

One vocabulary everywhere: a failed job, an API error body and a `job.failed` event all carry
an `ErrorCode` plus a one-line human message and optional structured details.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # Request / platform level
    INVALID_REQUEST = "INVALID_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    GENERATION_FAILED = "GENERATION_FAILED"
    WORKER_TIMEOUT = "WORKER_TIMEOUT"
    # REST API and CLI: a job (or other named thing) that does not exist, or is not the caller's
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    STORAGE_QUOTA_EXCEEDED = "STORAGE_QUOTA_EXCEEDED"
    # Input files
    INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
    INPUT_FORBIDDEN = "INPUT_FORBIDDEN"
    INPUT_TOO_LARGE = "INPUT_TOO_LARGE"
    EMPTY_INPUT = "EMPTY_INPUT"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    CORRUPT_MEDIA = "CORRUPT_MEDIA"
    # Output files
    OUTPUT_EXISTS = "OUTPUT_EXISTS"
    # Audio
    AUDIO_SILENT = "AUDIO_SILENT"
    AUDIO_TOO_SHORT = "AUDIO_TOO_SHORT"
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
    # Images / faces
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
    NO_FACE_DETECTED = "NO_FACE_DETECTED"
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    # Text
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    # Content safety (talkstack/safety/): a text the operator's policy or the text-safety classifier
    # refuses, or an output an operator's review refused (details: category, source); the operator's
    # policy file itself is unusable; the classifier could not answer
    CONTENT_REFUSED = "CONTENT_REFUSED"
    MODERATION_POLICY_INVALID = "MODERATION_POLICY_INVALID"
    MODERATION_UNAVAILABLE = "MODERATION_UNAVAILABLE"
    # Likeness and voice consent (talkstack/safety/consent.py, docs/safety.md)
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    CONSENT_CLIP_INVALID = "CONSENT_CLIP_INVALID"
    # Templates (talkstack/templates/, docs/templates.md): a template document that does not hold
    # together; variables a render gives that do not fit the template (details.problems lists each)
    TEMPLATE_INVALID = "TEMPLATE_INVALID"
    TEMPLATE_VARIABLES_INVALID = "TEMPLATE_VARIABLES_INVALID"
    # The local stack (CLI only): none answering where a command looks, or `talkstack up` cannot bind
    STACK_NOT_RUNNING = "STACK_NOT_RUNNING"
    PORT_IN_USE = "PORT_IN_USE"


class TalkstackError(Exception):
    """An expected failure with a stable code; never shown to users as a traceback."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, "details": self.details}
