"""Bundled template media: `asset:<name>` in a template names a file shipped with talkstack.

`<name>` is a file in talkstack/assets/templates/media (backgrounds, pictures and a music loop made
by scripts/make_template_assets.py, Apache-2.0), or `samples/<file>` for the bundled samples in
talkstack/assets/samples (the public-domain portrait and its speech), so the templates' default
presenter is the same sample every other demo uses.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from talkstack.contract.template import ASSET_PREFIX
from talkstack.errors import ErrorCode, TalkstackError

ASSETS_ROOT = Path(str(resources.files("talkstack") / "assets"))
TEMPLATES_DIR = ASSETS_ROOT / "templates"
"""The bundled template documents (one <id>.yaml each)."""
MEDIA_DIR = TEMPLATES_DIR / "media"
SAMPLES_DIR = ASSETS_ROOT / "samples"
SAMPLES_PREFIX = "samples/"
_NAME = re.compile(r"^(?:samples/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_asset(value: object) -> bool:
    return isinstance(value, str) and value.startswith(ASSET_PREFIX)


def asset_name(value: str) -> str:
    """`asset:studio.png` → `studio.png`."""
    return value.removeprefix(ASSET_PREFIX)


def asset_path(name: str) -> Path:
    """The bundled file `name` names (as written after `asset:`); INPUT_NOT_FOUND when there is none.
    Names are one file name (or `samples/<file>`), so a name can never leave the assets folder."""
    name = asset_name(name)
    if _NAME.match(name) and ".." not in name:
        if name.startswith(SAMPLES_PREFIX):
            path = SAMPLES_DIR / name.removeprefix(SAMPLES_PREFIX)
        else:
            path = MEDIA_DIR / name
        if path.is_file():
            return path
    raise TalkstackError(
        ErrorCode.INPUT_NOT_FOUND,
        f"asset:{name} is not a bundled file (see `talkstack templates show` for a template's assets)",
    )


def bundled_asset_names() -> list[str]:
    """Every name `asset:` accepts, sorted."""
    media = [p.name for p in MEDIA_DIR.iterdir() if p.is_file()] if MEDIA_DIR.is_dir() else []
    samples = [f"{SAMPLES_PREFIX}{p.name}" for p in SAMPLES_DIR.iterdir() if p.is_file()]
    return sorted(media + samples)
