"""Read and check template documents (JSON or YAML), and the bundled ones."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from talkstack.contract.template import TemplateDocument
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.templates.assets import TEMPLATES_DIR, asset_name, asset_path, is_asset
from talkstack.templates.variables import INTERPOLABLE, instantiate, placeholders

TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")
MAX_TEMPLATE_BYTES = 256 * 1024
"""The largest template document (the API's limit on a stored one, too)."""


class _PlainLoader(yaml.SafeLoader):
    """safe_load's plain data, without aliases: `*name` (and `<<: *name` merges) would let a few
    lines stand for an exponentially large document (a "billion laughs"), which validating walks."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def read_template_data(text: str | bytes) -> Any:
    """A template's data (or a variables file's) from JSON or YAML text: YAML is a superset of
    JSON; plain data only (no tags beyond safe_load's, no aliases), at most MAX_TEMPLATE_BYTES."""
    if len(text) > MAX_TEMPLATE_BYTES:
        raise TalkstackError(ErrorCode.TEMPLATE_INVALID, f"over {MAX_TEMPLATE_BYTES // 1024} KiB; shorten it")
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise TalkstackError(
            ErrorCode.TEMPLATE_INVALID, f"not JSON or YAML: {exc}".replace("\n", " ")
        ) from None


def parse_template(data: Any) -> TemplateDocument:
    """A checked template from its data (a dict, or JSON/YAML text). Raises TEMPLATE_INVALID with
    details {"problems": [...]} listing every problem: schema errors, placeholders naming undeclared
    variables, variables never used, bundled assets that do not exist or are not listed in `assets`,
    and a composition that does not validate when filled with the example variables."""
    if isinstance(data, str | bytes):
        data = read_template_data(data)
    if not isinstance(data, dict):
        raise _invalid("?", ["a template is an object (a JSON or YAML mapping)"])
    label = str(data.get("id", "?"))
    try:
        document = TemplateDocument.model_validate(data)
    except ValidationError as exc:
        raise _invalid(label, [_schema_problem(error) for error in exc.errors()]) from None

    found: list[str] = []
    body = document.composition.model_dump(mode="json")
    used = placeholders(body)
    for name, whole in used:
        if name not in document.variables:
            found.append(f"composition: {{{{{name}}}}} names no declared variable")
        elif not whole and document.variables[name].type not in INTERPOLABLE:
            kind = document.variables[name].type
            found.append(
                f"composition: {{{{{name}}}}} is a {kind} variable: a whole string, never inside text"
            )
    for name in sorted(set(document.variables) - {name for name, _ in used}):
        found.append(f"variables.{name}: declared but never used in the composition")
    for key in ("aspect", "resolution"):
        if key in document.composition.options:
            found.append(f"composition.options.{key}: set by the template's own {key!r} field")
    for name in sorted(set(document.example) - set(document.variables)):
        found.append(f"example.{name}: not a declared variable")

    listed = {asset.path for asset in document.assets}
    named = _asset_names([body, document.example, {n: v.default for n, v in document.variables.items()}])
    for name in sorted(named):
        try:
            asset_path(name)
        except TalkstackError:
            found.append(f"asset:{name} is not a bundled file")
        if name not in listed:
            found.append(f"asset:{name} is used but not listed in assets (with its licence)")
    for name in sorted(listed - named):
        found.append(f"assets: {name} is listed but never used")

    if not found:
        try:
            instantiate(document, document.example, resolve_asset=lambda name: f"assets/{name}")
        except TalkstackError as exc:
            found.extend(f"example: {p['message']}" for p in exc.details.get("problems", []))
    if found:
        raise _invalid(document.id, found)
    return document


def _schema_problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(document)"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"  # our validators' text, as written


def _asset_names(nodes: list[Any]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if is_asset(node):
            names.add(asset_name(node))
        elif isinstance(node, dict):
            names |= _asset_names(list(node.values()))
        elif isinstance(node, list):
            names |= _asset_names(node)
    return names


def _invalid(template_id: str, found: list[str]) -> TalkstackError:
    noun = "problem" if len(found) == 1 else "problems"
    return TalkstackError(
        ErrorCode.TEMPLATE_INVALID,
        f"template {template_id}: {len(found)} {noun}: {'; '.join(found)}",
        problems=found,
    )


def load_template(path: Path) -> TemplateDocument:
    """A template from a .yaml, .yml or .json file."""
    return parse_template(Path(path).read_bytes())


@functools.cache
def _bundled() -> dict[str, TemplateDocument]:
    documents: dict[str, TemplateDocument] = {}
    for path in sorted(TEMPLATES_DIR.iterdir()):
        if path.suffix in TEMPLATE_SUFFIXES and path.is_file():
            document = load_template(path)
            if document.id != path.stem:
                raise TalkstackError(ErrorCode.TEMPLATE_INVALID, f"{path.name}: its id is {document.id!r}")
            documents[document.id] = document
    return documents


def bundled_templates() -> dict[str, TemplateDocument]:
    """The templates that ship with talkstack, by id (checked once per process)."""
    return dict(_bundled())


def get_template(template_id: str) -> TemplateDocument:
    """A bundled template by id; NOT_FOUND names the ones there are."""
    templates = _bundled()
    if template_id not in templates:
        raise TalkstackError(
            ErrorCode.NOT_FOUND,
            f"no template {template_id!r} (bundled: {', '.join(sorted(templates))})",
        )
    return templates[template_id]
