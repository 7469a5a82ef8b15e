"""First checks on any input file: it exists, is not empty, is not over its size limit."""

from __future__ import annotations

from pathlib import Path

import filetype

from talkstack.errors import ErrorCode, TalkstackError


def check_input_file(
    path: Path, *, what: str, max_bytes: int, too_large: ErrorCode = ErrorCode.INPUT_TOO_LARGE
) -> int:
    """Return the file size, or raise with a code that says what is wrong with the file."""
    if not path.exists():
        raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"{what} file not found: {path}", path=str(path))
    if not path.is_file():
        raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"{what} path is not a file: {path}", path=str(path))
    size = path.stat().st_size
    if size == 0:
        raise TalkstackError(ErrorCode.EMPTY_INPUT, f"{what} file is empty (0 bytes): {path.name}")
    if size > max_bytes:
        raise TalkstackError(
            too_large,
            f"{what} file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB",
            bytes=size,
            max_bytes=max_bytes,
        )
    return size


def sniff_mime(path: Path) -> str | None:
    """MIME type from the file's magic bytes (not its name); None if unrecognised."""
    kind = filetype.guess(str(path))
    return kind.mime if kind else None
