"""Fill a template with a user's variables: check every value, substitute, resolve bundled assets
and validate the result as a composition request, reporting every problem at once.

Substitution rules (docs/templates.md):
- a string that is exactly `{{name}}` takes the variable's value as it is (a media reference, a
  number, an object), and when that value is null the key (or list item) is left out;
- any other string has each `{{name}}` replaced by the value's text;
- variables the render does not give take their default;
- every `asset:<name>` string of the template's own, and every media variable's `asset:<name>`
  value, becomes whatever `resolve_asset(name)` returns (a media reference the render can read);
  a text variable's value stays the text it is, even one that starts with `asset:`.

Problems are {"variable", "code", "message"} with code one of `unknown` (the template has no such
variable), `missing` (a required variable was not given), `wrong_type` (the value is not of the
variable's type), `invalid` (of the right type but refused: too long, not one of the choices, or
the filled composition does not validate there), `asset_not_found` (an `asset:` name that is not
bundled). `variable` is null for a problem no single variable caused.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from talkstack.contract.composition import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, CompositionRequest
from talkstack.contract.fields import MediaRef
from talkstack.contract.request import AvatarVoiceOptions
from talkstack.contract.template import PLACEHOLDER, TemplateDocument, TemplateVariable
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.templates.assets import asset_name, is_asset

AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
MEDIA_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": IMAGE_EXTENSIONS,
    "avatar": IMAGE_EXTENSIONS,
    "video": VIDEO_EXTENSIONS,
    "audio": AUDIO_EXTENSIONS,
}
INTERPOLABLE = ("text", "colour", "voice")
"""Variable types whose value may sit inside a longer string (their value is text)."""
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
Problem = dict[str, Any]
Path_ = tuple[str | int, ...]


def problem(variable: str | None, code: str, message: str) -> Problem:
    return {"variable": variable, "code": code, "message": message}


def check_value(name: str, variable: TemplateVariable, value: Any) -> tuple[Any, Problem | None]:
    """The value as it goes into the composition (a voice name becomes voice options), or a problem."""
    kind = variable.type
    if kind == "text":
        if not isinstance(value, str):
            return value, problem(name, "wrong_type", f"{name}: expected text, got {_kind(value)}")
        if variable.max_length is not None and len(value) > variable.max_length:
            return value, problem(
                name, "invalid", f"{name}: at most {variable.max_length} characters (got {len(value)})"
            )
        return value, _choice(name, variable, value)
    if kind == "colour":
        if not isinstance(value, str) or not _COLOUR.match(value):
            return value, problem(
                name, "wrong_type", f"{name}: expected a colour #rrggbb, got {_show(value)}"
            )
        return value, None
    if kind in MEDIA_EXTENSIONS:
        return value, _check_media(name, kind, value)
    # voice: a language / espeak-ng voice name, or avatar voice options
    if isinstance(value, str):
        if not _LANGUAGE.match(value):
            return value, problem(
                name, "wrong_type", f"{name}: expected a voice such as en-us, got {_show(value)}"
            )
        found = _choice(name, variable, value)
        return {"language": value}, found
    if isinstance(value, dict):
        try:
            AvatarVoiceOptions.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return value, problem(name, "wrong_type", f"{name}: not voice options ({where}: {first['msg']})")
        return value, _choice(name, variable, value.get("language", "en"))
    return value, problem(
        name, "wrong_type", f"{name}: expected a voice name or voice options, got {_kind(value)}"
    )


def _check_media(name: str, kind: str, value: Any) -> Problem | None:
    noun = "a photo" if kind == "avatar" else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    if not isinstance(value, str):
        return problem(name, "wrong_type", f"{name}: expected {noun} reference, got {_kind(value)}")
    if not is_asset(value):
        try:
            MediaRef.parse(value)
        except ValueError as exc:
            return problem(name, "wrong_type", f"{name}: not a media reference ({exc})")
    if not value.lower().endswith(MEDIA_EXTENSIONS[kind]):
        allowed = ", ".join(MEDIA_EXTENSIONS[kind])
        return problem(name, "wrong_type", f"{name}: expected {noun} ({allowed}), got {_show(value)}")
    return None


def _choice(name: str, variable: TemplateVariable, value: str) -> Problem | None:
    if variable.choices is not None and value not in variable.choices:
        return problem(name, "invalid", f"{name}: one of {', '.join(variable.choices)} (got {_show(value)})")
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…'"


# ---------------------------------------------------------------------------------------------
# Substitution
# ---------------------------------------------------------------------------------------------

_DROP = object()


def placeholders(node: Any) -> list[tuple[str, bool]]:
    """Every placeholder in a template body: (variable name, whether it is the whole string)."""
    found: list[tuple[str, bool]] = []
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node.strip()) is not None
        found.extend((match.group(1), whole) for match in PLACEHOLDER.finditer(node))
    elif isinstance(node, dict):
        for key, item in node.items():
            found.extend(placeholders(key))
            found.extend(placeholders(item))
    elif isinstance(node, list):
        for item in node:
            found.extend(placeholders(item))
    return found


def fill(node: Any, values: dict[str, Any], origins: dict[Path_, set[str]], path: Path_ = ()) -> Any:
    """`node` with its placeholders replaced; records which variables fed each path in `origins`."""
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node.strip())
        if whole:
            origins.setdefault(path, set()).add(whole.group(1))
            value = values.get(whole.group(1))
            return _DROP if value is None else copy.deepcopy(value)
        names = {match.group(1) for match in PLACEHOLDER.finditer(node)}
        if names:
            origins.setdefault(path, set()).update(names)
        return PLACEHOLDER.sub(lambda m: _text(values.get(m.group(1))), node)
    if isinstance(node, dict):
        filled = {key: fill(item, values, origins, (*path, key)) for key, item in node.items()}
        return {key: item for key, item in filled.items() if item is not _DROP}
    if isinstance(node, list):
        filled_items = [fill(item, values, origins, (*path, index)) for index, item in enumerate(node)]
        return [item for item in filled_items if item is not _DROP]
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # voice options inside a sentence read as their language
        return str(value.get("language", ""))
    return str(value)


def resolve_assets(
    node: Any, resolve: Callable[[str], str], found: list[Problem], variable: str | None = None
) -> Any:
    """Every `asset:<name>` string replaced by `resolve(name)`; names that do not resolve are
    problems (of `variable`, when the node is that variable's value)."""
    if is_asset(node):
        try:
            return resolve(asset_name(node))
        except TalkstackError as exc:
            found.append(problem(variable, "asset_not_found", exc.message))
            return node
    if isinstance(node, dict):
        return {key: resolve_assets(item, resolve, found, variable) for key, item in node.items()}
    if isinstance(node, list):
        return [resolve_assets(item, resolve, found, variable) for item in node]
    return node


def _culprit(location: Path_, origins: dict[Path_, set[str]], message: str = "") -> str | None:
    """The variable that fed the value a pydantic error at `location` is about, or None when no
    single variable did. An error at (or inside) a filled value is that value's variable's; one at
    a model holding filled values is theirs when only one variable fed it, or when the message
    names the field (`text: ...`) and one variable fed that field."""
    inside: list[tuple[int, set[str]]] = []
    above: dict[Path_, set[str]] = {}
    for path, names in origins.items():
        relation, matched = _relation(path, location)
        if relation == "inside":
            inside.append((matched, names))
        elif relation == "above":
            above[path] = names
    if inside:  # the filled value the error's location follows furthest (`title` may be a tag, too)
        names = max(inside, key=lambda found: found[0])[1]
    else:
        field = message.partition(":")[0]
        named = {path: n for path, n in above.items() if path[len(location) : len(location) + 1] == (field,)}
        names = set().union(*(named or above).values())
    return next(iter(names)) if len(names) == 1 else None


def _relation(path: Path_, location: Path_) -> tuple[str | None, int]:
    """How a filled `path` stands to a pydantic error `location`, which may hold extra string parts
    (a union's tag, e.g. `source.avatar.inputs`): "inside" when the error is at the filled value or
    below it, "above" when it is at a model that holds it, None when they are apart; and how many
    of the location's parts were followed. List indices must match where they stand."""
    i = j = 0
    skipped_last = False
    while i < len(path) and j < len(location):
        if path[i] == location[j]:
            i, j, skipped_last = i + 1, j + 1, False
        elif isinstance(location[j], str) and j > 0:
            j, skipped_last = j + 1, True
        else:
            return None, j
    if i == len(path):
        return "inside", j
    if j == len(location) and not skipped_last:
        return "above", j
    return None, j


# ---------------------------------------------------------------------------------------------
# Instantiate
# ---------------------------------------------------------------------------------------------


def instantiate(
    template: TemplateDocument, variables: dict[str, Any], *, resolve_asset: Callable[[str], str]
) -> dict[str, Any]:
    """A composition request (as a dict: `task`, `scenes`, `options`, `template`) from `template`
    filled with `variables`; the caller adds `preview`, `output`, `notify`, `consent` as it needs.

    Raises TalkstackError(TEMPLATE_VARIABLES_INVALID) with details {"problems": [...]} listing every
    problem at once (see the module docstring); the composition is only validated when every
    variable fits, so its errors never repeat a variable's."""
    found: list[Problem] = []
    for name in variables:
        if name not in template.variables:
            known = ", ".join(sorted(template.variables)) or "none"
            found.append(
                problem(name, "unknown", f"{name}: {template.id} has no such variable (it has {known})")
            )
    values: dict[str, Any] = {}
    for name, variable in template.variables.items():
        given = variables.get(name)
        if given is None:
            if variable.required:
                found.append(problem(name, "missing", f"{name}: required ({variable.description})"))
                continue
            given = variable.default
        if given is None:
            values[name] = None
            continue
        values[name], trouble = check_value(name, variable, given)
        if trouble is not None:
            found.append(trouble)
    if found:
        raise variables_invalid(template.id, found)

    # Bundled files before filling: the template's own and media variables' values, never text a
    # user typed (a text value `asset:…` stays text).
    body = resolve_assets(template.composition.model_dump(mode="json"), resolve_asset, found)
    for name, variable in template.variables.items():
        if variable.type in MEDIA_EXTENSIONS:
            values[name] = resolve_assets(values.get(name), resolve_asset, found, name)
    if found:
        raise variables_invalid(template.id, found)
    origins: dict[Path_, set[str]] = {}
    body = fill(body, values, origins)
    options = {**body.get("options", {}), "aspect": template.aspect, "resolution": template.resolution}
    request = {
        "task": "composition",
        "scenes": body["scenes"],
        "options": options,
        # as given (bundled names stay `asset:` names), so a re-render starts from the same variables
        "template": {"id": template.id, "version": template.version, "variables": dict(variables)},
    }
    try:
        CompositionRequest.model_validate(request)
    except ValidationError as exc:
        seen: set[tuple[str | None, str]] = set()
        for error in exc.errors():
            location = tuple(error["loc"])
            where = ".".join(str(part) for part in location)
            message = error["msg"].removeprefix("Value error, ")  # pydantic's, before our validators' text
            culprit = _culprit(location, origins, message)
            if culprit is not None and (culprit, message) in seen:
                continue  # one value refused alike wherever the template uses it: one problem
            seen.add((culprit, message))
            found.append(problem(culprit, "invalid", f"{culprit or where}: {message} (at {where})"))
        raise variables_invalid(template.id, found) from None
    return request


def variables_invalid(template_id: str, found: list[Problem]) -> TalkstackError:
    listed = "; ".join(p["message"] for p in found)
    noun = "problem" if len(found) == 1 else "problems"
    return TalkstackError(
        ErrorCode.TEMPLATE_VARIABLES_INVALID,
        f"template {template_id}: {len(found)} {noun} with the variables: {listed}",
        problems=found,
    )
