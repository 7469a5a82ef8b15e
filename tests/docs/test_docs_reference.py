"""The docs stay true: every command, option, setting, endpoint, path, make target and Python import
the pages name exists in the code (tests/docs/doccheck.py), and the numbers they quote from the code
(ports, how many Lambda functions, the turbo step count, settings' defaults) are the code's.

The numbers are checked here rather than generated into the pages: each is one sentence in prose,
and the failure names the file and line to fix."""

from __future__ import annotations

import pytest

from tests.docs.doccheck import Numbers, Page, Reference, check_numbers, check_page, load_pages

PAGES = load_pages()
BY_PATH = {page.path: page for page in PAGES}


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


def test_the_pages_are_found():
    paths = set(BY_PATH)
    assert {"README.md", "docs/api.md", "clients/typescript/README.md", "aws/lambda/README.md"} <= paths
    assert not any("node_modules" in path for path in paths)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.path)
def test_what_the_page_names_exists(reference: Reference, page: Page):
    problems = check_page(reference, page, BY_PATH)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.path)
def test_the_numbers_are_the_codes(reference: Reference, page: Page):
    problems = check_numbers(reference, Numbers.from_code(), page)
    assert not problems, "\n".join(map(str, problems))


def test_the_readme_opening_commands_are_run():
    """The README's first steps are run as written (test_docs_runnable.py), not only checked."""
    runnable = [block for block in BY_PATH["README.md"].blocks() if block.tag == "runnable"]
    assert runnable, "README.md has no `<!-- docs-test: runnable -->` block"
