"""The docs checker itself (tests/docs/doccheck.py): each check finds a planted error in fixture
Markdown, at the right line, and passes the same page written correctly — against the real CLI,
settings, OpenAPI document and repository."""

from __future__ import annotations

import pytest

from tests.docs.doccheck import (
    Numbers,
    Page,
    Reference,
    check_numbers,
    check_page,
    logical_lines,
    split_commands,
)

FENCE = "```"


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


def problems(reference: Reference, text: str, path: str = "docs/fixture.md") -> list[str]:
    return [str(p) for p in check_page(reference, Page(path, text))]


def number_problems(reference: Reference, text: str, path: str = "docs/fixture.md") -> list[str]:
    return [str(p) for p in check_numbers(reference, Numbers.from_code(), Page(path, text))]


def sh(*lines: str, tag: str | None = None, language: str = "sh") -> str:
    head = f"<!-- docs-test: {tag} -->\n" if tag else ""
    return "# Title\n\n" + head + f"{FENCE}{language}\n" + "\n".join(lines) + f"\n{FENCE}\n"


CLEAN = sh(
    "talkstack up --port 4567 &   # a comment with --bogus",
    "export TALKSTACK_API_URL=http://127.0.0.1:4577 TALKSTACK_API_KEY=$(talkstack keys create --tier pro)",
    "talkstack submit --image talkstack/assets/samples/portrait.png \\",
    "    --audio talkstack/assets/samples/speech.wav --no-wait",
    "talkstack render voice --text 'Hello there' -o out/hello.wav",
    "talkstack render avatar -i talkstack/assets/samples/portrait.png -a out/hello.wav -o out/hello.mp4",
    'curl -H "Authorization: Bearer $TALKSTACK_API_KEY" $TALKSTACK_API_URL/v1/jobs/job_123/cancel -X POST',
    "talkstack status <job_id>",
    "make demo && make lint",
    "cd clients/typescript && npm test",
) + (
    "\nSee [the API](api.md#keys-tiers-and-limits), [settings](settings.md), `talkstack/errors.py`, "
    "`make schemas`, "
    "`talkstack keys create --tier … [--name …]`, GET `/v1/jobs/{job_id}` and `/v1/webhooks/…`; "
    "`TALKSTACK_MAX_AUDIO_SECONDS`, the `TALKSTACK_QUALITY_*` family, `TALKSTACK_DEBUG`.\n\n"
    f"{FENCE}python\nfrom talkstack.client import TalkstackClient\n"
    f"client = TalkstackClient('http://127.0.0.1:4577', 'tsk_x')\n{FENCE}\n"
)


def test_a_correct_page_passes(reference):
    assert problems(reference, CLEAN) == []
    assert number_problems(reference, CLEAN) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("talkstack submit --imagee x.png", "docs/fixture.md:5: `talkstack submit` has no option --imagee"),
        ("talkstack jobz list", "docs/fixture.md:5: `talkstack` has no command 'jobz'"),
        ("talkstack api submitt", "docs/fixture.md:5: `talkstack api` has no command 'submitt'"),
        ("talkstack models --json true", "docs/fixture.md:5: `talkstack models` takes no argument 'true'"),
        ("talkstack keys create --tier", "`talkstack keys create --tier`: needs a value"),
        ("make deploy", "docs/fixture.md:5: the Makefile has no target 'deploy'"),
        ("python bench/gpu/nope.py", "docs/fixture.md:5: bench/gpu/nope.py is not in the repository"),
        ("cat ../shared/design/architecture.md", "../shared/design/architecture.md leaves the repository"),
        ("talkstack submit --image face.png --audio talkstack/assets/samples/speech.wav", "input face.png"),
        ("talkstack submit inputs/hello/job.json", "input inputs/hello/job.json is neither"),
        ("curl $TALKSTACK_API_URL/v1/jobz", "/v1/jobz is not a path of schemas/openapi.json"),
        (
            "curl -X DELETE $TALKSTACK_API_URL/v1/usage",
            "DELETE /v1/usage: schemas/openapi.json has GET",
        ),
        (
            "aws s3 ls s3://$INPUT_BUCKET/",
            "docs/fixture.md:5: $INPUT_BUCKET is not set anywhere on this page",
        ),
        (
            "export TALKSTACK_MAX_AUDIO_SECS=60",
            "docs/fixture.md:5: TALKSTACK_MAX_AUDIO_SECS is not a setting",
        ),
        ("cd docs/nowhere", "cd docs/nowhere: not a folder of the repository"),
    ],
)
def test_a_planted_error_in_a_block_is_found(reference, line, expected):
    found = problems(reference, sh("true", line))
    assert any(expected in p for p in found), found


def test_a_continued_line_reports_where_the_command_starts(reference):
    text = sh(
        "talkstack up",
        "talkstack submit \\",
        "  --image talkstack/assets/samples/portrait.png \\",
        "  --bogus",
    )
    assert problems(reference, text) == ["docs/fixture.md:5: `talkstack submit` has no option --bogus"]


def test_a_file_written_earlier_on_the_page_may_be_read(reference):
    text = sh(
        "talkstack render voice -t hi -o speech.wav", "talkstack submit --image x.png --audio speech.wav"
    )
    assert problems(reference, text) == [
        "docs/fixture.md:5: input x.png is neither a repository file nor written earlier on this page"
    ]


@pytest.mark.parametrize(
    ("prose", "expected"),
    [
        ("See [x](../../shared/design.md).", "link ../../shared/design.md leaves the repository"),
        ("See [x](nope.md).", "link nope.md: docs/nope.md is not in the repository"),
        ("See [x](api.md#no-such-heading).", "docs/api.md has no heading #no-such-heading"),
        ("Run `talkstack render avatar --imag x`.", "`talkstack render avatar` has no option --imag"),
        ("Run `make tests`.", "the Makefile has no target 'tests'"),
        ("Code in `talkstack/pipeline/nope.py`.", "talkstack/pipeline/nope.py is not in the repository"),
        ("The design is in `../../shared/design.md`.", "leaves the repository"),
        ("Beside it: `../docs/nope.md`.", "docs/nope.md is not in the repository"),
        ("Set `TALKSTACK_MAX_AUDIO_SECS`.", "TALKSTACK_MAX_AUDIO_SECS is not a setting"),
        ("The `TALKSTACK_NOPE_*` family.", "no setting starts with TALKSTACK_NOPE_"),
        ("`POST /v1/usage` returns it.", "POST /v1/usage: schemas/openapi.json has GET only"),
        ("`GET /v1/keys`", "/v1/keys is not a path of schemas/openapi.json"),
    ],
)
def test_a_planted_error_in_prose_is_found(reference, prose, expected):
    found = problems(reference, f"# Title\n\n{prose}\n")
    assert any(expected in p and p.startswith("docs/fixture.md:3:") for p in found), found


def test_a_python_block_must_compile_and_its_imports_must_import(reference):
    found = problems(reference, sh("from talkstack.client import TalkstackClinet", language="python"))
    assert found == [
        "docs/fixture.md:4: from talkstack.client import TalkstackClinet: "
        "talkstack.client has no TalkstackClinet"
    ]
    found = problems(reference, sh("import talkstack.nope", language="python"))
    assert len(found) == 1 and "No module named 'talkstack.nope'" in found[0]
    found = problems(reference, sh("print('unclosed'", language="python"))
    assert len(found) == 1 and found[0].startswith("docs/fixture.md:4: Python:")


def test_tags(reference):
    page = Page(
        "docs/fixture.md", sh("talkstack models", tag="runnable") + sh("aws s3 ls", tag="skip: needs AWS")
    )
    assert [(b.line, b.tag, b.skip_reason) for b in page.blocks()] == [
        (4, "runnable", None),
        (10, "skip", "needs AWS"),
    ]
    # a skipped block is not checked; a skip needs its reason; a misspelt tag is an error
    assert problems(reference, sh("talkstack nope", tag="skip: needs a GPU")) == []
    assert problems(reference, sh("talkstack models", tag="skip:")) == [
        "docs/fixture.md:3: unknown docs-test tag 'skip:': use `runnable` or `skip: REASON`"
    ]
    assert problems(reference, sh("talkstack models", tag="runable"))[0].startswith(
        "docs/fixture.md:3: unknown"
    )
    assert problems(reference, sh("x", tag="runnable", language="text")) == [
        "docs/fixture.md:3: docs-test tag on a text block"
    ]


def test_console_blocks_check_only_prompt_lines(reference):
    text = sh(
        "$ talkstack models",
        "lite-avatar  lite  Apache-2.0 --not-an-option",
        "$ talkstack modles",
        language="console",
    )
    found = problems(reference, text)
    assert len(found) == 1 and found[0].startswith("docs/fixture.md:6: `talkstack` has no command 'modles'")


def test_shell_parsing():
    script = (
        "A=1 talkstack up &  # starts\ncat <<'EOF' > job.json\n"
        '{"talkstack nope": 1}\nEOF\n'
        "echo 'a\nb' | wc -l"
    )
    lines = list(logical_lines(script))
    assert [offset for offset, _ in lines] == [0, 1, 4]
    assert split_commands(lines[0][1]) == [["A=1", "talkstack", "up"]]
    assert split_commands(
        "x=$(talkstack keys create --tier pro) && talkstack status <job id> 2>/dev/null"
    ) == [
        ["x=__SUBST__"],
        ["talkstack", "status", "__SUBST__", ">/dev/null"],
        ["talkstack", "keys", "create", "--tier", "pro"],
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("export TALKSTACK_API_URL=http://127.0.0.1:4710", "port 4710: the REST API is on 4577"),
        ("open http://localhost:4567/docs", "port 4567: the REST API is on 4577"),
        ("AWS_ENDPOINT_URL=http://127.0.0.1:4577", "port 4577: the local AWS endpoint is on 4567"),
        ("the stack listens on 127.0.0.1:4600", "port 4600: a local stack port is on 4567"),
        ("the eight functions", "'eight functions': there are 12"),
        ("turbo (8 steps) costs less", "turbo: 8 steps, but a turbo avatar job runs 4"),
        (
            "`TALKSTACK_AUDIT_RETENTION_DAYS` (30)",
            "TALKSTACK_AUDIT_RETENTION_DAYS: the page says 30, its default is 365",
        ),
        ("`TALKSTACK_WEBHOOK_MAX_PAUSE_S` (2 h)", "the page says 2 h, its default is 3600"),
        ("| handler | does |\n|---|---|\n| ingest | x |\n", "handler table lacks api, validate"),
    ],
)
def test_a_wrong_number_is_found(reference, text, expected):
    found = number_problems(reference, f"# Title\n\n{text}\n")
    assert any(expected in p and p.startswith("docs/fixture.md:3:") for p in found), found


def test_a_block_that_starts_its_own_stack_may_use_its_ports(reference):
    text = sh("talkstack up --port 4700 &", "export TALKSTACK_API_URL=http://127.0.0.1:4710")
    assert number_problems(reference, text) == []
    assert number_problems(reference, text + "\nThen `http://127.0.0.1:4710/v1/jobs`.\n") == [
        "docs/fixture.md:8: port 4710: the REST API is on 4577 (talkstack/settings/local.py)"
    ]
