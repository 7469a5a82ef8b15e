"""Describe settings classes: one row per setting (variable, type, default, current value, source), and
the Markdown of docs/settings.md. Knows nothing of which groups exist: `talkstack.cli.settings`
assembles the catalogue (the pipeline group lives in the pipeline layer, the CDK group in infra/).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from talkstack.settings.environ import lookup

MASK = "********"
REQUIRED = "required, unset"


@dataclass(frozen=True)
class Group:
    """One group of settings: a pydantic model and how its values are found."""

    name: str
    model: type[BaseModel]
    summary: str
    env_prefix: str | None = None
    """Prefix of the variables; None: the model's own `env_prefix` (pydantic-settings classes)."""
    load: Callable[[], BaseModel] | None = None
    """Builds the current values (default: the model with no arguments, i.e. from the environment)."""
    context: Mapping[str, Any] = field(default_factory=dict)
    """Values that win over the environment, by field name (the CDK context)."""
    context_key: Callable[[str], str] | None = None
    """A field's key in that context (shown in the docs)."""
    context_source: str = "cdk context"
    defined_in: str | None = None
    """Where the class is defined, for the docs (default: its module and name)."""


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    env: str
    type: str
    default: str
    value: str
    source: str
    """`env`, `default`, `required, unset`, or the group's context source (e.g. `cdk context`)."""
    description: str
    context_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def env_name(group: Group, name: str, info: FieldInfo) -> str:
    """The variable a field is read from: its alias (e.g. AWS_ENDPOINT_URL), else prefix + NAME."""
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    prefix = group.env_prefix if group.env_prefix is not None else group.model.model_config.get("env_prefix")
    return f"{prefix or ''}{name.upper()}"


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def type_name(annotation: Any) -> str:
    """A short, stable spelling of a field's type (`int`, `Path | None`, `list[str]`, `'local' | 'modal'`)."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(repr(arg) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in get_args(annotation))
    if get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):  # Annotated
        return type_name(get_args(annotation)[0])
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in get_args(annotation))}]"
    return getattr(annotation, "__name__", str(annotation))


def show(value: Any, secret: bool = False) -> str:
    """How a value is printed (and how a default is documented): as it would be written in a variable."""
    if value is None:
        return ""
    if secret or isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={show(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(show(v) for v in value)
    return str(value)


def default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    return "" if default is PydanticUndefined else show(default)


def describe(group: Group) -> tuple[list[Row], str | None]:
    """The group's rows with their current values, and why the group does not load here (or None).

    A group that does not load (the pipeline group outside a deployed function: no bucket names) is
    still listed, with the raw values of the variables that are set."""
    problem: str | None = None
    instance: BaseModel | None = None
    try:
        instance = group.load() if group.load is not None else group.model()
    except (ValidationError, ValueError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else [{"msg": str(exc), "loc": ()}]
        missing = [".".join(str(p) for p in e["loc"]) for e in errors if e.get("type") == "missing"]
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in errors
            if e.get("type") != "missing"
        ]
        if missing:
            problems.insert(0, f"required settings unset ({', '.join(missing)})")
        problem = "; ".join(problems)
    rows = []
    for name, info in group.model.model_fields.items():
        env = env_name(group, name, info)
        secret = is_secret(info.annotation)
        raw = lookup(env)
        if name in group.context:
            source = group.context_source
        elif raw is not None:
            source = "env"
        elif info.is_required():
            source = REQUIRED
        else:
            source = "default"
        if instance is not None:
            value = show(getattr(instance, name), secret)
        elif name in group.context:
            value = show(group.context[name], secret)
        elif raw is not None:
            value = show(raw, secret)
        else:
            value = "" if info.is_required() else default_of(info)
        rows.append(
            Row(
                group=group.name,
                name=name,
                env=env,
                type=type_name(info.annotation),
                default=default_of(info),
                value=value,
                source=source,
                description=" ".join((info.description or "").split()),
                context_key=group.context_key(name) if group.context_key else None,
            )
        )
    return rows, problem


def markdown(groups: list[Group], command: str) -> str:
    """docs/settings.md: every setting of every group, from the classes alone (no environment)."""
    lines = [
        "# Settings",
        "",
        f"<!-- Generated from the settings classes by `{command}`; edit the classes, not this file"
        " (tests/unit/test_settings.py checks they agree). -->",
        "",
        f"Every setting talkstack reads, by group. Regenerate this file with `{command}`; "
        "`talkstack settings` prints the values in effect in your shell and where each came from "
        "(`--group`, `--json`). Secrets are masked.",
        "",
    ]
    for group in groups:
        lines += [f"- [{group.name}](#{group.name}): {group.summary}"]
    for group in groups:
        cls = group.model
        where = group.defined_in or f"{cls.__module__}.{cls.__qualname__}"
        lines += ["", f"## {group.name}", "", group.summary, "", f"Defined in `{where}`.", ""]
        lines += ["| variable | type | default | description |", "|---|---|---|---|"]
        for name, info in cls.model_fields.items():
            variable = f"`{env_name(group, name, info)}`"
            if group.context_key:
                variable += f"<br>`-c {group.context_key(name)}=…`"
            default = default_of(info)
            cells = [
                variable,
                f"`{type_name(info.annotation)}`",
                f"`{default}`" if default and default != "required" else (default or "unset"),
                " ".join((info.description or "").split()),
            ]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
