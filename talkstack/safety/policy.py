"""The operator's moderation policy: a versioned JSON file of blocked categories (terms, phrases and
patterns), allowed languages and per-key overrides, and the matcher that judges a job's texts by it.

Matching is on a normalised copy of each text, so spelling tricks do not slip past a term:
Unicode NFKC (full-width and stylised letters become plain ones), invisible format characters
(zero-width spaces and joiners, soft hyphens, bidi marks) and other invisible code points
(variation selectors, Hangul fillers) removed, casefolded, and common look-alike letters (Cyrillic
and Greek ones that render as Latin) folded. Each text is also tried with digits and symbols read
as letters ("k1ll y0urs3lf"). A term matches whole words only (the term "porn" does not match
"Pornic", a town), and the words of a phrase may be separated by any run of spaces or punctuation,
or written together ("kill-yourself", "killyourself"). Patterns are the operator's own regular
expressions over the same normalised text (word boundaries are theirs to write).

What it does not catch: letters spaced out one by one, words split across fields, paraphrase,
other languages than the lists' — that is what the classifier is for (docs/safety.md).

Some categories can never be overridden (`overridable: false`, e.g. sexual content involving
minors): a key override that names one is refused when the policy is loaded, not ignored.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from talkstack.contract.composition import (
    AvatarSource,
    CompositionRequest,
    TitleSource,
    VideoSource,
)
from talkstack.contract.fields import StrictModel
from talkstack.contract.moderation import (
    LANGUAGE_CATEGORY,
    NO_CLASSIFIER,
    ModerationVerdict,
    RefusalSource,
)
from talkstack.contract.request import AvatarRequest, JobRequestBase, VideoRequest, VoiceRequest
from talkstack.errors import ErrorCode, TalkstackError

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[1] / "assets" / "policy" / "default.json"
"""The shipped policy (bundled into the Lambda code asset)."""
BUNDLED_POLICY_DIR = "talkstack/assets/policy"
"""Where an operator's own policy file goes to travel with the Lambda code (every `*.json` here is
bundled); TALKSTACK_MODERATION_POLICY then names it by this relative path."""
_CODE_ROOT = DEFAULT_POLICY_PATH.parents[3]

CategoryId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
LanguageTag = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]

# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

# Letters from other scripts that render like Latin ones (the usual homoglyph swaps), after casefold.
_LOOKALIKES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "ϲ": "c",
    }
)  # fmt: skip
# Digits and symbols written for letters (leetspeak-lite): only tried as a second reading.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)


# Invisible code points that are not format characters (Cf): variation selectors, the combining
# grapheme joiner, Hangul fillers, Mongolian free variation selectors, Khmer inherent vowels —
# Unicode's Default_Ignorable_Code_Point set beyond Cf. A renderer or a speech model skips them, so
# "po\ufe0frn" must read as "porn".
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001d173-\U0001d17a\U000e0100-\U000e01ef]"
)


def normalise(text: str) -> str:
    """The form every term, pattern and text is compared in (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = _IGNORABLE.sub("", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))
    text = text.casefold().translate(_LOOKALIKES)
    # Accents off (é → e), so "pörn" is "porn"; NFKD splits them into combining marks.
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(text.split())


def _readings(text: str) -> tuple[str, ...]:
    plain = normalise(text)
    leet = plain.translate(_LEET)
    return (plain,) if leet == plain else (plain, leet)


def term_pattern(term: str) -> str:
    """A term as a regex: whole words, any run of spaces or punctuation between its words, or none
    ("killyourself" is "kill yourself" read aloud)."""
    words = re.findall(r"\w+", normalise(term))
    if not words:
        raise ValueError(f"term {term!r} has no letters or digits")
    return r"(?<!\w)" + r"[\W_]*".join(re.escape(word) for word in words) + r"(?!\w)"


# ---------------------------------------------------------------------------------------------
# The policy file
# ---------------------------------------------------------------------------------------------


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    return patterns


def _check_terms(terms: list[str]) -> list[str]:
    for term in terms:
        term_pattern(term)
    return terms


class Category(StrictModel):
    """One blocked category: its terms and phrases, its patterns, and the classifier risks that
    count as it."""

    id: CategoryId
    description: str = ""
    overridable: bool = True
    """False: no key override may allow it (sexual content involving minors)."""
    terms: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list)
    patterns: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(default_factory=list)
    classifier_risks: list[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]] = Field(default_factory=list)
    """Risks of the text-safety classifier (modal_workers/text_safety.py: harm, social_bias,
    violence, sexual_content, unethical_behavior, profanity, jailbreak) judged as this category
    when their probability reaches the policy's `classifier_threshold`."""

    _terms = field_validator("terms")(_check_terms)
    _patterns = field_validator("patterns")(_check_patterns)


class KeyOverride(StrictModel):
    """What one submitter may do that the policy otherwise refuses (or must not do beyond it)."""

    allow_categories: list[CategoryId] = Field(default_factory=list)
    """Categories this key's jobs pass (each must be overridable)."""
    extra_terms: dict[CategoryId, list[Annotated[str, Field(min_length=1, max_length=200)]]] = Field(
        default_factory=dict
    )
    """More terms refused for this key only, by category."""
    allowed_languages: list[LanguageTag] | Literal["any"] | None = None
    """Replaces the policy's allowed languages for this key (None: the policy's)."""

    @field_validator("extra_terms")
    @classmethod
    def _terms(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for terms in value.values():
            _check_terms(terms)
        return value


class Policy(StrictModel):
    """An operator's moderation policy (talkstack/assets/policy/default.json is the shipped one)."""

    version: Annotated[str, Field(min_length=1, max_length=100)]
    """Recorded with every verdict: change it whenever the lists change."""
    description: str = ""
    allowed_languages: list[LanguageTag] | Literal["any"] = "any"
    """Languages a job may declare (ISO 639 codes; `en-GB` counts as `en`), or `any`."""
    classifier_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    """A classifier risk at or above this probability refuses the job as its category."""
    categories: list[Category] = Field(min_length=1)
    keys: dict[Annotated[str, Field(pattern=r"^(?:[a-z0-9]{1,32}|drop:[^,=*]+)$")], KeyOverride] = Field(
        default_factory=dict
    )
    """Per-submitter overrides: an API key id, or `drop:<folder>` for an S3 drop folder."""

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        ids = [category.id for category in self.categories]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"categories: {', '.join(duplicated)} appear more than once")
        if LANGUAGE_CATEGORY in ids:
            raise ValueError(f"categories: {LANGUAGE_CATEGORY!r} is reserved for the language check")
        by_id = {category.id: category for category in self.categories}
        for key, override in self.keys.items():
            for name in [*override.allow_categories, *override.extra_terms]:
                if name not in by_id:
                    raise ValueError(f"keys.{key}: no category {name!r} in this policy")
            for name in override.allow_categories:
                if not by_id[name].overridable:
                    raise ValueError(f"keys.{key}.allow_categories: {name} can never be overridden")
        return self

    @cached_property
    def _matchers(self) -> dict[str, re.Pattern[str]]:
        return {category.id: _compile(category.terms, category.patterns) for category in self.categories}

    def category(self, category_id: str) -> Category:
        return next(category for category in self.categories if category.id == category_id)

    def override_for(self, key: str | None) -> KeyOverride:
        return self.keys.get(key, KeyOverride()) if key else KeyOverride()


def _compile(terms: Iterable[str], patterns: Iterable[str]) -> re.Pattern[str]:
    parts = [term_pattern(term) for term in terms] + [f"(?:{pattern})" for pattern in patterns]
    return re.compile("|".join(parts) if parts else r"(?!)")


def _policy_error(where: str, problem: str) -> TalkstackError:
    return TalkstackError(
        ErrorCode.MODERATION_POLICY_INVALID,
        f"TALKSTACK_MODERATION_POLICY ({where}): {problem}; fix the policy file (docs/safety.md)",
    )


def parse_policy(text: str, where: str) -> Policy:
    """A policy from its JSON text; MODERATION_POLICY_INVALID naming the first problem."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _policy_error(where, f"not JSON: {exc}") from exc
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise _policy_error(where, f"{location}: {first['msg']}") from exc


def load_policy(source: str | None) -> Policy:
    """The policy a setting names: None or "" the shipped file, a value starting with `{` inline
    JSON, anything else a path (a relative one not found from the working directory is read from
    the code's root, where the Lambda bundle carries talkstack/assets/policy/)."""
    if not source:
        return parse_policy(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"), "the shipped policy")
    if source.lstrip().startswith("{"):
        return parse_policy(source, "inline JSON")
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists():
        path = _CODE_ROOT / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _policy_error(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    return parse_policy(text, str(path))


# ---------------------------------------------------------------------------------------------
# Judging texts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldText:
    """One text a job will turn into media, and the request field it came from."""

    field: str
    text: str


def request_texts(request: JobRequestBase) -> list[FieldText]:
    """Every text the job turns into media: the script (`inputs.text`, spoken by a voice or an
    avatar), the scene prompt of an avatar (`options.prompt`), the prompt of a video
    (`inputs.prompt`). Not `options.negative_prompt`: it names what the video must avoid, so
    refusing a banned word there would punish the safe use; not `metadata`, which is never rendered.
    (Template texts will join this list when requests can carry them.)"""
    if isinstance(request, CompositionRequest):
        return composition_texts(request)
    texts: list[FieldText] = []
    if isinstance(request, AvatarRequest | VoiceRequest) and request.inputs.text is not None:
        texts.append(FieldText("inputs.text", request.inputs.text))
    if isinstance(request, AvatarRequest) and request.options.prompt is not None:
        texts.append(FieldText("options.prompt", request.options.prompt))
    if isinstance(request, VideoRequest):
        texts.append(FieldText("inputs.prompt", request.inputs.prompt))
    return texts


def composition_texts(request: CompositionRequest) -> list[FieldText]:
    """Every text a composition shows or speaks, named by its scene (`scenes[1].overlays[0].text`):
    each scene's script, avatar scene prompt, clip prompt, title and subtitle, overlay texts and
    bullet items, and transcript (captions draw it)."""
    texts: list[FieldText] = []
    for index, scene in enumerate(request.scenes):
        at = f"scenes[{index}]"
        source = scene.source
        if isinstance(source, AvatarSource):
            if source.inputs.text is not None:
                texts.append(FieldText(f"{at}.source.inputs.text", source.inputs.text))
            if source.options.prompt is not None:
                texts.append(FieldText(f"{at}.source.options.prompt", source.options.prompt))
        elif isinstance(source, VideoSource):
            texts.append(FieldText(f"{at}.source.inputs.prompt", source.inputs.prompt))
        elif isinstance(source, TitleSource):
            texts.append(FieldText(f"{at}.source.title", source.title))
            if source.subtitle:
                texts.append(FieldText(f"{at}.source.subtitle", source.subtitle))
        for number, overlay in enumerate(scene.overlays):
            for name in ("text", "secondary"):
                if value := getattr(overlay, name):
                    texts.append(FieldText(f"{at}.overlays[{number}].{name}", value))
            for item_number, item in enumerate(overlay.items or []):
                texts.append(FieldText(f"{at}.overlays[{number}].items[{item_number}]", item))
        if scene.transcript is not None:
            texts.append(FieldText(f"{at}.transcript", scene.transcript))
    return texts


def request_language(request: JobRequestBase) -> str | None:
    """The language the request declares for its speech (voice jobs, text-driven avatars, a
    composition whose text-driven avatar scenes all speak one); None where it declares none
    (audio-driven avatars, videos), whose texts skip the language check."""
    if isinstance(request, CompositionRequest):
        scene_requests = [request.scene_request(index) for index in range(len(request.scenes))]
        spoken = {
            language
            for scene_request in scene_requests
            if scene_request is not None and (language := request_language(scene_request)) is not None
        }
        return spoken.pop() if len(spoken) == 1 else None
    if isinstance(request, VoiceRequest):
        return request.options.language
    if isinstance(request, AvatarRequest) and request.needs_voice_step:
        return request.voice_step_options().language
    return None


@dataclass(frozen=True)
class Hit:
    category: str
    field: str
    source: RefusalSource


def _language_allowed(allowed: Sequence[str] | str, language: str | None) -> bool:
    if allowed == "any" or language is None:
        return True
    return language.split("-")[0].lower() in allowed


def policy_hits(policy: Policy, texts: Sequence[FieldText], key: str | None = None) -> list[Hit]:
    """Every (category, field) whose terms or patterns match, in policy then field order, the
    key's extra terms included (overrides are applied by `judge`)."""
    override = policy.override_for(key)
    extra = {name: _compile(terms, ()) for name, terms in override.extra_terms.items()}
    hits = []
    for category in policy.categories:
        matchers = [policy._matchers[category.id], *([extra[category.id]] if category.id in extra else [])]
        for item in texts:
            readings = _readings(item.text)
            if any(m.search(reading) for m in matchers for reading in readings):
                hits.append(Hit(category.id, item.field, "policy"))
                break
    return hits


def classifier_hits(policy: Policy, scores: dict[str, float], fields: Sequence[str]) -> list[Hit]:
    """The categories whose classifier risks reached the threshold (scores: the highest per risk
    over all texts, which the classifier judges together, so a hit names every field checked: it
    cannot tell which of them tripped it)."""
    field = " or ".join(fields)
    return [
        Hit(category.id, field, "classifier")
        for category in policy.categories
        if any(scores.get(risk, 0.0) >= policy.classifier_threshold for risk in category.classifier_risks)
    ]


def judge(
    policy: Policy,
    texts: Sequence[FieldText],
    *,
    language: str | None = None,
    key: str | None = None,
    classifier: str = NO_CLASSIFIER,
    scores: dict[str, float] | None = None,
) -> ModerationVerdict:
    """The verdict on a job's texts: the declared language first, then the policy's terms and
    patterns, then the classifier's scores (if one ran). A hit in a category the key's override
    allows is noted, not refused; a non-overridable category is refused whatever the key."""
    override = policy.override_for(key)
    fields = [item.field for item in texts]
    base = {
        "policy_version": policy.version,
        "classifier": classifier,
        "fields": fields,
        "scores": scores or {},
    }
    allowed_languages = override.allowed_languages or policy.allowed_languages
    if not _language_allowed(allowed_languages, language):
        return ModerationVerdict(
            decision="refused", category=LANGUAGE_CATEGORY, source="policy", field="language", **base
        )
    hits = policy_hits(policy, texts, key) + classifier_hits(policy, scores or {}, fields)
    allowed_by_key: list[str] = []
    for hit in hits:
        if policy.category(hit.category).overridable and hit.category in override.allow_categories:
            if hit.category not in allowed_by_key:
                allowed_by_key.append(hit.category)
            continue
        return ModerationVerdict(
            decision="refused",
            category=hit.category,
            source=hit.source,
            field=hit.field,
            allowed_by_key=allowed_by_key,
            **base,
        )
    return ModerationVerdict(decision="allowed", allowed_by_key=allowed_by_key, **base)


def refusal(verdict: ModerationVerdict) -> TalkstackError:
    """CONTENT_REFUSED for a refused verdict: the category, the policy version and who decided;
    never the text or the term (the message reaches the submitter)."""
    if verdict.category == LANGUAGE_CATEGORY:
        message = (
            f"language: not allowed by this service's content policy (version {verdict.policy_version}); "
            "use one of the languages it allows"
        )
    else:
        judge_name = "text-safety classifier" if verdict.source == "classifier" else "content policy"
        message = (
            f"{verdict.field}: refused by this service's {judge_name} (category {verdict.category}, "
            f"policy {verdict.policy_version}); change the text, or ask the operator about the policy"
        )
    return TalkstackError(
        ErrorCode.CONTENT_REFUSED,
        message,
        category=verdict.category,
        policy_version=verdict.policy_version,
        source=verdict.source,
        field=verdict.field,
    )
