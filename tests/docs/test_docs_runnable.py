"""The runnable blocks of the docs run as written (tests/docs/runner.py says how, and the few
substitutions it makes): each page's `<!-- docs-test: runnable -->` blocks in one shell session, in a
fresh clone-like directory, against one real `talkstack up` started for this module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.doccheck import Page, Reference, check_page, load_pages
from tests.docs.runner import BlockFailure, PageRun, Ports, StackProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

FIXTURE = Path(__file__).parent / "fixtures" / "runnable.md"
RUNNABLE_PAGES = [page for page in load_pages() if any(b.tag == "runnable" for b in page.blocks())]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports.free()


@pytest.fixture(scope="module")
def stack(ports: Ports, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    process = StackProcess(ports, tmp_path_factory.mktemp("docs-stack") / "talkstack-up.log")
    yield process
    process.stop()


def fixture_page(text: str) -> Page:
    return Page("tests/docs/fixtures/runnable.md", text)


def test_the_runner_runs_blocks_in_order_in_one_session(stack, ports, reference, tmp_path):
    page = fixture_page(FIXTURE.read_text())
    assert check_page(reference, page) == []  # the fixture is a correct page too
    outputs = PageRun(page, tmp_path / "clone", ports, reference).run()
    assert [block.line for block, _ in outputs] == [6, 26, 33]  # the untagged and skipped blocks did not run
    assert f"`talkstack up` is running at http://127.0.0.1:{ports.endpoint}" in outputs[0][1]
    assert "models listed" in outputs[1][1]  # exported key, the stack's own API port, the cd kept
    assert "jobs: " in outputs[2][1]
    assert (tmp_path / "clone" / "talkstack" / "assets" / "samples" / "speech.wav").is_file()


def test_a_failing_block_names_its_line_its_commands_and_output(ports, reference, tmp_path):
    text = "# Page\n\n<!-- docs-test: runnable -->\n```sh\necho first\ncat docs/nope.md\necho never\n```\n"
    with pytest.raises(BlockFailure) as info:
        PageRun(fixture_page(text), tmp_path / "clone", ports, reference).run()
    message = str(info.value)
    assert message.startswith("tests/docs/fixtures/runnable.md:4: runnable block failed (exit status 1)")
    assert "cat docs/nope.md" in message and "first" in message and "No such file" in message
    assert "never\n" not in message.split("its output")[1]


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda page: page.path)
def test_the_runnable_blocks_run_as_written(stack, ports, reference, page, tmp_path):
    try:
        PageRun(page, tmp_path / "clone", ports, reference).run()
    except BlockFailure as failure:
        pytest.fail(f"{failure}\n--- talkstack up ---\n{stack.output()[-3000:]}", pytrace=False)
