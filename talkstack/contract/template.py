"""Templates: a versioned document that describes a composition with typed variables (docs/templates.md).

A template is a composition body (`scenes`, `options`) whose strings may hold `{{name}}`
placeholders, plus the variables those placeholders name (their types, defaults and whether they
are required), an `example` set of variables that renders it, and the licences of the bundled files
it uses. `talkstack.templates.instantiate` turns a template and a user's variables into an ordinary
composition request. Templates are JSON or YAML; `schemas/template.schema.json` describes them.

Bundled media are named `asset:<path>`: `<path>` is relative to talkstack/assets/templates/media,
or `samples/<file>` for the bundled samples (talkstack/assets/samples: the portrait and its speech).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from talkstack.contract.composition import AspectRatio, CompositionResolution
from talkstack.contract.fields import StrictModel

VariableType = Literal["text", "image", "video", "audio", "avatar", "voice", "colour"]
"""What a variable holds:

- `text`: a string (at most `max_length` characters; one of `choices` when given);
- `image`, `video`, `audio`: a media reference (s3://bucket/key, a key relative to the request, or
  `asset:<path>` for a bundled file) whose extension is of that kind;
- `avatar`: the presenter's photo, a media reference to an image;
- `voice`: the voice a text-driven presenter speaks with: a language / espeak-ng voice name such as
  `en-us` (one of `choices` when given), or an object of avatar voice options
  ({"model", "language", "pitch"});
- `colour`: `#rrggbb` (or `#rrggbbaa`).
"""
VARIABLE_TYPES: tuple[str, ...] = ("text", "image", "video", "audio", "avatar", "voice", "colour")
VariableName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
TemplateId = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
"""`{{name}}` inside a template string (spaces inside the braces are allowed)."""
ASSET_PREFIX = "asset:"
MAX_VARIABLES = 40


class TemplateVariable(StrictModel):
    """One thing a user changes in a template."""

    type: VariableType
    description: Annotated[str, Field(min_length=1, max_length=300)]
    required: bool = False
    """A required variable has no default: every render must give it."""
    default: Any = None
    """Used when the render does not give the variable (checked like a given value)."""
    max_length: Annotated[int, Field(ge=1, le=20_000)] | None = None
    """Longest text accepted (`text` variables only)."""
    choices: Annotated[list[str], Field(min_length=1, max_length=100)] | None = None
    """The values accepted (`text` and `voice` variables only)."""

    @model_validator(mode="after")
    def _check_variable(self) -> TemplateVariable:
        if self.required and self.default is not None:
            raise ValueError("default: a required variable has no default")
        if self.max_length is not None and self.type != "text":
            raise ValueError(f"max_length: only for text variables (this one is {self.type})")
        if self.choices is not None and self.type not in ("text", "voice"):
            raise ValueError(f"choices: only for text and voice variables (this one is {self.type})")
        return self


class TemplateAsset(StrictModel):
    """A bundled file the template uses, and where its licence comes from."""

    path: Annotated[str, Field(min_length=1, max_length=200)]
    """As the template names it after `asset:` (e.g. `backgrounds/sunset.png`, `samples/portrait.png`)."""
    licence: Annotated[str, Field(min_length=1, max_length=100)]
    """SPDX identifier or a short statement (e.g. `Apache-2.0`, `public domain`)."""
    source: Annotated[str, Field(min_length=1, max_length=500)]
    """Who made it and how (e.g. the script that generates it)."""


class TemplateComposition(StrictModel):
    """The composition a template renders: a composition request body without `task`, `output`,
    `notify`, `consent` or `template` (those belong to the render). Its strings may hold `{{name}}`
    placeholders, so its shape is checked by instantiating it with the template's `example`."""

    scenes: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=20)]
    options: dict[str, Any] = Field(default_factory=dict)
    """Composition options; `aspect` and `resolution` come from the template's own fields."""


class TemplateDocument(StrictModel):
    """A template: a composition with typed variables, versioned (docs/templates.md)."""

    id: TemplateId
    version: Annotated[int, Field(ge=1)]
    """Raise it whenever the template changes what it renders."""
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(min_length=1, max_length=1000)]
    category: Annotated[str, Field(min_length=1, max_length=50)]
    aspect: AspectRatio
    resolution: CompositionResolution = "720p"
    variables: Annotated[
        dict[VariableName, TemplateVariable],
        # names outside the pattern are refused by the published schema too, not only by the model
        Field(max_length=MAX_VARIABLES, json_schema_extra={"additionalProperties": False}),
    ] = Field(default_factory=dict)
    composition: TemplateComposition
    example: dict[str, Any] = Field(default_factory=dict)
    """Variables that render the template (with its defaults): a user's starting point."""
    assets: list[TemplateAsset] = Field(default_factory=list)
    """Every bundled file the template names (`asset:<path>`), with its licence."""
