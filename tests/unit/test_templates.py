"""Template documents: the bundled four parse and fill; every problem is reported at once."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from talkstack.contract.composition import CompositionRequest, canvas_size
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.templates import (
    asset_path,
    bundled_asset_names,
    bundled_templates,
    get_template,
    instantiate,
    parse_template,
)
from talkstack.templates.assets import TEMPLATES_DIR


def resolve(name: str) -> str:
    asset_path(name)  # raises for a name that is not bundled, as a real resolver would
    return f"assets/{name}"


def problems_of(exc: pytest.ExceptionInfo[TalkstackError]) -> list[dict[str, Any]]:
    return exc.value.details["problems"]


def test_the_four_bundled_templates():
    templates = bundled_templates()
    assert set(templates) == {"product-demo", "tutorial", "social-ad", "news"}
    for template in templates.values():
        assert template.version == 1
        request = CompositionRequest.model_validate(
            instantiate(template, template.example, resolve_asset=resolve)
        )
        assert request.options.aspect == template.aspect
        assert request.template is not None and request.template.id == template.id
        # every avatar runs on the lite engines by default (an offline render needs no GPU)
        for index in range(len(request.scenes)):
            scene = request.scene_request(index)
            assert scene is None or scene.options.model == "lite-avatar"
    assert templates["social-ad"].aspect == "9:16"
    assert canvas_size("9:16", templates["social-ad"].resolution) == (720, 1280)


@pytest.mark.parametrize("template_id", ["product-demo", "tutorial", "social-ad", "news"])
def test_bundled_template_files_parse_as_yaml_and_as_json(template_id):
    data = yaml.safe_load((TEMPLATES_DIR / f"{template_id}.yaml").read_text(encoding="utf-8"))
    from_yaml = parse_template(data)
    from_json = parse_template(json.dumps(data))
    assert from_yaml == from_json == get_template(template_id)


def test_social_ad_fills_its_story():
    template = get_template("social-ad")
    request = CompositionRequest.model_validate(
        instantiate(
            template,
            {
                "headline": "Big news",
                "script": "Hello there.",
                "highlight_colour": "#00FF00",
                "voice": "en-gb",
            },
            resolve_asset=resolve,
        )
    )
    presenter = request.scenes[0]
    assert presenter.cutout  # cut out over the gradient
    assert (
        presenter.background.media is not None
        and presenter.background.media.key == "assets/social-gradient.jpg"
    )
    assert presenter.overlays[0].text == "Big news"
    assert request.options.captions.burn_in == "highlight"
    assert request.options.captions.highlight_colour == "#00FF00"
    assert request.options.music is not None and request.options.music.duck_db > 0
    avatar = request.scene_request(0)
    assert avatar is not None and avatar.inputs.text == "Hello there."
    assert avatar.inputs.image.key == "assets/samples/portrait.png"
    assert avatar.voice_step_options().language == "en-gb"
    assert request.template is not None and request.template.variables["headline"] == "Big news"


def test_optional_list_items_left_out_and_text_interpolated():
    template = get_template("product-demo")
    variables = {**template.example, "feature_2": None, "feature_3": None}
    request = CompositionRequest.model_validate(instantiate(template, variables, resolve_asset=resolve))
    bullets = request.scenes[1].overlays[0]
    assert bullets.items == ["Room-filling sound"]  # the two optional features are not given
    assert request.scenes[0].source.title == "Lumen Speaker"  # type: ignore[union-attr]


def test_unknown_wrong_type_and_missing_are_one_error():
    template = get_template("social-ad")
    with pytest.raises(TalkstackError) as caught:
        instantiate(
            template,
            {"script": "Hi.", "headlne": "typo", "highlight_colour": "yellow"},
            resolve_asset=resolve,
        )
    assert caught.value.code == ErrorCode.TEMPLATE_VARIABLES_INVALID
    found = {(p["variable"], p["code"]) for p in problems_of(caught)}
    assert found == {("headlne", "unknown"), ("highlight_colour", "wrong_type"), ("headline", "missing")}
    assert all(p["message"] for p in problems_of(caught))
    assert "3 problems" in caught.value.message


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("background", "clip.mp4", "wrong_type"),  # an image variable given a video
        ("background", "s3://Bad_Bucket/x.png", "wrong_type"),
        ("music", "loop.png", "wrong_type"),
        ("presenter", 42, "wrong_type"),
        ("avatar_model", "sora", "invalid"),  # not one of the choices
        ("voice", "English", "wrong_type"),
        ("voice", {"language": "en", "model": "nope"}, "wrong_type"),
        ("headline", "x" * 61, "invalid"),  # max_length 60
        ("brand_colour", "#12345", "wrong_type"),
        ("background", "asset:nowhere.png", "asset_not_found"),
    ],
)
def test_each_kind_of_bad_value(name, value, code):
    template = get_template("social-ad")
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {**template.example, name: value}, resolve_asset=resolve)
    assert [(p["variable"], p["code"]) for p in problems_of(caught)] == [(name, code)]


def test_media_variables_accept_refs_of_their_kind():
    template = get_template("social-ad")
    body = instantiate(
        template,
        {**template.example, "background": "s3://brand-media/bg.webp", "music": "uploads/song.mp3"},
        resolve_asset=resolve,
    )
    request = CompositionRequest.model_validate(body)
    assert request.scenes[0].background.media.bucket == "brand-media"  # type: ignore[union-attr]
    assert request.options.music is not None and request.options.music.media.key == "uploads/song.mp3"


def test_a_value_the_composition_refuses_names_its_variable():
    template = get_template("social-ad")
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {**template.example, "headline": "   "}, resolve_asset=resolve)
    assert [(p["variable"], p["code"]) for p in problems_of(caught)] == [("headline", "invalid")]


def _own_template() -> dict[str, Any]:
    return {
        "id": "hello",
        "version": 1,
        "name": "Hello",
        "description": "A title card and a presenter.",
        "category": "test",
        "aspect": "1:1",
        "variables": {
            "greeting": {"type": "text", "description": "The title.", "required": True},
            "presenter": {"type": "avatar", "description": "Photo.", "default": "asset:samples/portrait.png"},
        },
        "composition": {
            "scenes": [
                {"source": {"type": "title", "title": "{{greeting}}!"}, "duration_s": 2},
                {"source": {"type": "avatar", "inputs": {"image": "{{presenter}}", "text": "{{greeting}}"}}},
            ]
        },
        "example": {"greeting": "Hi"},
        "assets": [{"path": "samples/portrait.png", "licence": "public domain", "source": "NASA"}],
    }


def test_an_own_template_parses():
    document = parse_template(yaml.safe_dump(_own_template()))
    assert document.id == "hello"
    body = instantiate(document, {"greeting": "Hey"}, resolve_asset=resolve)
    assert body["scenes"][0]["source"]["title"] == "Hey!"
    assert body["options"]["aspect"] == "1:1"


def test_template_invalid_lists_every_problem():
    data = _own_template()
    data["composition"]["scenes"][0]["source"]["subtitle"] = "{{undeclared}}"
    data["variables"]["unused"] = {"type": "colour", "description": "Never used.", "default": "#000000"}
    data["composition"]["scenes"].append({"source": {"type": "media", "media": "asset:missing.png"}})
    data["composition"]["scenes"][1]["source"]["inputs"]["text"] = "Say {{presenter}}"  # media inside text
    with pytest.raises(TalkstackError) as caught:
        parse_template(data)
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID
    listed = "\n".join(caught.value.details["problems"])
    assert "{{undeclared}} names no declared variable" in listed
    assert "variables.unused: declared but never used" in listed
    assert "asset:missing.png is not a bundled file" in listed
    assert "asset:missing.png is used but not listed in assets" in listed
    assert "{{presenter}} is a avatar variable" in listed
    assert len(caught.value.details["problems"]) == 5


def test_template_invalid_when_the_example_does_not_render():
    data = _own_template()
    data["composition"]["scenes"][0]["duration_s"] = 9000  # beyond a scene's 600 s
    with pytest.raises(TalkstackError) as caught:
        parse_template(data)
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID
    assert any("example:" in p and "duration_s" in p for p in caught.value.details["problems"])


def test_template_schema_errors_are_all_listed():
    data = copy.deepcopy(_own_template())
    data["id"] = "Not An Id"
    data["version"] = 0
    data["variables"]["greeting"]["type"] = "number"
    with pytest.raises(TalkstackError) as caught:
        parse_template(data)
    problems = caught.value.details["problems"]
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"id", "version", "variables.greeting.type"}


def test_not_yaml_is_template_invalid():
    with pytest.raises(TalkstackError) as caught:
        parse_template("id: [unclosed")
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID


def test_asset_names():
    assert asset_path("samples/portrait.png").is_file()
    assert asset_path("asset:music-loop.m4a").is_file()
    assert "social-gradient.jpg" in bundled_asset_names()
    for name in ("../samples/portrait.png", "samples/../../pyproject.toml", "nope.png", "/etc/passwd"):
        with pytest.raises(TalkstackError) as caught:
            asset_path(name)
        assert caught.value.code == ErrorCode.INPUT_NOT_FOUND


def test_every_bundled_asset_is_used_and_licensed():
    used = {asset.path for template in bundled_templates().values() for asset in template.assets}
    media = {name for name in bundled_asset_names() if not name.startswith("samples/")}
    assert media <= used  # nothing shipped that no template needs
    licences = {asset.licence for t in bundled_templates().values() for asset in t.assets}
    assert licences <= {"Apache-2.0", "public domain"}


@pytest.mark.parametrize("template_id", ["product-demo", "tutorial", "social-ad", "news"])
def test_bundled_templates_match_the_published_schema(template_id):
    import jsonschema

    schema = json.loads((TEMPLATES_DIR.parents[2] / "schemas" / "template.schema.json").read_text())
    data = yaml.safe_load((TEMPLATES_DIR / f"{template_id}.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    broken = {**data, "variables": {**data["variables"], "Bad Name": {"type": "text", "description": "x"}}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


@pytest.mark.parametrize("headline", ["asset:samples/portrait.png", "asset:no-such-file.png"])
def test_a_text_value_that_looks_like_an_asset_stays_text(headline):
    # A user's text is never resolved as a bundled file: it is neither swapped for a media
    # reference nor refused as an asset that does not exist.
    template = get_template("social-ad")
    variables = {**template.example, "headline": headline}

    request = CompositionRequest.model_validate(instantiate(template, variables, resolve_asset=resolve))

    assert request.scenes[0].overlays[0].text == headline


def test_a_media_value_naming_no_bundled_file_is_its_variables_problem():
    template = get_template("social-ad")
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {**template.example, "background": "asset:nope.jpg"}, resolve_asset=resolve)
    assert [(p["variable"], p["code"]) for p in problems_of(caught)] == [("background", "asset_not_found")]


def test_yaml_aliases_are_refused_before_they_can_multiply():
    # A "billion laughs": nine lines that stand for 10^9 strings once the aliases are followed.
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(TalkstackError) as caught:
        parse_template("\n".join(lines))
    assert caught.value.code == ErrorCode.TEMPLATE_INVALID and "aliases" in caught.value.message


def test_yaml_tags_and_oversized_documents_are_refused():
    with pytest.raises(TalkstackError, match="not JSON or YAML"):
        parse_template("id: !!python/object/apply:os.system ['true']")
    with pytest.raises(TalkstackError, match="KiB"):
        parse_template("id: x\n" + "# padding\n" * 30_000)


@pytest.mark.parametrize(
    ("template_id", "name"),
    [
        ("tutorial", "step_1_title"),
        ("tutorial", "step_2_title"),
        ("news", "headline"),
        ("social-ad", "headline"),
    ],
)
def test_an_overlay_the_composition_refuses_names_the_variable_that_fed_it(template_id, name):
    # The overlay's own check fails at the overlay (scenes.N.overlays.0), which holds this variable's
    # text; a neighbour's (another overlay's bullet `items.0`) is not to blame.
    template = get_template(template_id)
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {**template.example, name: "   "}, resolve_asset=resolve)
    (found,) = problems_of(caught)
    assert (found["variable"], found["code"]) == (name, "invalid")
    assert found["message"].startswith(f"{name}: text: ") and "Value error" not in found["message"]


def test_a_problem_no_single_variable_caused_names_none():
    # A lower third fed by two variables, refused as a whole: neither alone is to blame.
    template = parse_template(
        {
            **_own_template(),
            "variables": {
                "greeting": {"type": "text", "description": "The text.", "required": True},
                "second": {"type": "text", "description": "Under it.", "default": "x"},
                "presenter": _own_template()["variables"]["presenter"],
            },
            "composition": {
                "scenes": [
                    {
                        "source": {"type": "avatar", "inputs": {"image": "{{presenter}}", "text": "Hello."}},
                        "overlays": [{"type": "lower_third", "text": "{{greeting}}{{second}}"}],
                    }
                ]
            },
        }
    )
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {"greeting": " ", "second": " "}, resolve_asset=resolve)
    (found,) = problems_of(caught)
    assert found["variable"] is None and found["message"].startswith("scenes.0.overlays.0: ")


def test_a_value_refused_wherever_it_is_used_is_one_problem():
    data = _own_template()
    data["composition"]["scenes"][0]["source"]["title"] = "{{greeting}}"  # the title and the speech
    template = parse_template(data)
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {"greeting": "   "}, resolve_asset=resolve)
    (found,) = problems_of(caught)
    assert (found["variable"], found["code"]) == ("greeting", "invalid")
    assert "1 problem" in caught.value.message


def test_a_variables_own_checks_read_as_written():
    data = copy.deepcopy(_own_template())
    data["variables"]["greeting"]["default"] = "Hi"  # required, so it takes no default
    with pytest.raises(TalkstackError) as caught:
        parse_template(data)
    (found,) = caught.value.details["problems"]
    assert found == "variables.greeting: default: a required variable has no default"


def test_a_title_cards_subtitle_is_blamed_on_its_own_variable():
    # pydantic's location `scenes.0.source.title.subtitle` holds the union's tag `title`, which is
    # also the name of the field the title's variable fills: the subtitle's variable is to blame.
    data = _own_template()
    data["variables"]["line"] = {"type": "text", "description": "Under the title.", "default": "x"}
    data["composition"]["scenes"][0]["source"]["subtitle"] = "{{line}}"
    template = parse_template(data)
    with pytest.raises(TalkstackError) as caught:
        instantiate(template, {"greeting": "Hi", "line": "y" * 301}, resolve_asset=resolve)
    assert [(p["variable"], p["code"]) for p in problems_of(caught)] == [("line", "invalid")]
