"""Read the docs the way the docs test needs them: pages, fenced blocks with their `docs-test` tags,
the shell commands in a block, and the reference checks (commands and options against the real CLI,
settings, endpoints, repository paths, make targets, Python imports).

Tags (the HTML comment on the line right before a fence):
  (none)                            a reference block: checked, not run
  <!-- docs-test: runnable -->      run for real against a local stack (tests/docs/runner.py)
  <!-- docs-test: skip: REASON -->  not checked (it needs AWS, a GPU, Modal…); the reason is required
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[2]
CHECKED_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "python"})
TAG = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
SETTING = re.compile(r"\bTALKSTACK_[A-Z0-9_]*[A-Z0-9_]")
ENDPOINT = re.compile(
    r"(?:\b(?P<method>GET|POST|PUT|PATCH|DELETE|HEAD)\b[`\s]+(?:\S*?))?(?P<path>/v1/[^\s`'\")\]>,;]*)"
)
PLACEHOLDER = re.compile(r"[$<>{}*?…]|__SUBST__|\.\.\.")
CONTROL = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "|&", "\n"})
REDIRECT = frozenset({">", ">>", "<", ">&", "&>", "<<<", ">|", "&>>"})
WRAPPERS = frozenset({"sudo", "time", "nohup", "exec", "command", "then", "do", "else", "!"})
INPUT_PARAMS = frozenset({"image", "audio", "manifest", "reference"})
"""The talkstack parameters that name a file to read: it must ship with the repository or be written
earlier on the same page."""

Tag = Literal["reference", "runnable", "skip"]


@dataclass(frozen=True)
class Problem:
    page: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    """1-based line of the opening fence."""
    language: str
    text: str
    tag: Tag
    skip_reason: str | None = None

    @property
    def body_line(self) -> int:
        return self.line + 1

    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    line: int
    """1-based line in the page."""


@dataclass
class Page:
    path: str
    """Relative to the repository root, with '/'."""
    text: str

    @cached_property
    def tokens(self) -> list[Token]:
        return MarkdownIt("commonmark").enable("table").parse(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def blocks(self) -> list[Block]:
        return [b for b, _ in self.blocks_and_problems()]

    def blocks_and_problems(self) -> list[tuple[Block, Problem | None]]:
        """Every fenced block in a checked language, with its tag; a malformed tag is a problem."""
        found: list[tuple[Block, Problem | None]] = []
        previous: Token | None = None
        for token in self.tokens:
            if token.type == "fence" and token.map is not None:
                language = (token.info.split() or [""])[0].lower()
                line = token.map[0] + 1
                tag: Tag = "reference"
                reason = None
                problem = None
                comment = previous if previous is not None and previous.type == "html_block" else None
                body = None
                if comment is not None and comment.map is not None and comment.map[1] == token.map[0]:
                    match = TAG.match(comment.content.strip().splitlines()[-1])
                    body = match.group("body") if match else None
                if body is not None:
                    if body == "runnable":
                        tag = "runnable"
                    elif body.startswith("skip:") and body[5:].strip():
                        tag, reason = "skip", body[5:].strip()
                    else:
                        problem = Problem(
                            self.path,
                            line - 1,
                            f"unknown docs-test tag {body!r}: use `runnable` or `skip: REASON`",
                        )
                    if language not in CHECKED_LANGUAGES and problem is None:
                        problem = Problem(
                            self.path, line - 1, f"docs-test tag on a {language or 'plain'} block"
                        )
                if language in CHECKED_LANGUAGES or problem is not None:
                    block = Block(self.path, line, language, token.content, tag, reason)
                    found.append((block, problem))
            previous = token
        return found


def page_paths(root: Path = ROOT) -> list[str]:
    """The pages the docs test reads: README.md, docs/**/*.md and the READMEs under clients/, aws/ and
    bench/ (not node_modules)."""
    found = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    for folder in ("clients", "aws", "bench"):
        found += sorted(p for p in (root / folder).rglob("README.md") if "node_modules" not in p.parts)
    return [p.relative_to(root).as_posix() for p in found if p.is_file()]


def load_pages(root: Path = ROOT) -> list[Page]:
    return [Page(path, (root / path).read_text(encoding="utf-8")) for path in page_paths(root)]


# --- shell -----------------------------------------------------------------------------------------


def _scan_quotes(text: str, state: str | None) -> str | None:
    """The open quote at the end of `text` (None: none), starting in `state`."""
    i = 0
    while i < len(text):
        c = text[i]
        if state == "'":
            if c == "'":
                state = None
        elif c == "\\":
            i += 1
        elif state == '"':
            if c == '"':
                state = None
        elif c in "'\"":
            state = c
        i += 1
    return state


def _strip_comment(line: str) -> str:
    """Drop a `#` comment: a `#` outside quotes at the start of a word, as bash reads it."""
    state: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if state == "'":
            state = None if c == "'" else state
        elif c == "\\":
            i += 1
        elif state == '"':
            state = None if c == '"' else state
        elif c in "'\"":
            state = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i]
        i += 1
    return line


HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


def logical_lines(script: str, console: bool = False) -> Iterator[tuple[int, str]]:
    """(0-based line offset, command line) for each command line of a shell block: `\\` continuations
    joined, comments and here-document bodies dropped, a quoted string may span lines. In a console
    block only `$ ` lines (and their continuations) are commands; in others a leading `$ ` is dropped."""
    buffer: list[str] = []
    start = 0
    quote: str | None = None
    heredoc: str | None = None
    continuing = False
    for offset, raw in enumerate(script.splitlines()):
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        line = raw
        if not buffer:
            stripped = line.lstrip()
            if stripped.startswith("$ "):
                line = stripped[2:]
            elif console and not continuing:
                continue
            start = offset
        if quote is None:
            line = _strip_comment(line)
        quote = _scan_quotes(line, quote)
        continuing = quote is None and line.rstrip().endswith("\\")
        if continuing:
            buffer.append(line.rstrip()[:-1])
            continue
        buffer.append(line)
        if quote is not None:
            buffer.append("\n")
            continue
        text = " ".join(buffer) if "\n" not in buffer else "".join(buffer)
        buffer = []
        match = HEREDOC.search(text)
        if match:
            heredoc = match.group(2)
        if text.strip():
            yield start, text


def _substitutions(line: str) -> tuple[str, list[str]]:
    """Replace each `$(…)` and backtick command substitution with __SUBST__; return the inner commands."""
    inner: list[str] = []
    out: list[str] = []
    i = 0
    quote: str | None = None
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = None if c == "'" else quote
            out.append(c)
        elif c == "'" and quote is None:
            quote = "'"
            out.append(c)
        elif c == '"':
            quote = None if quote == '"' else '"'
            out.append(c)
        elif line.startswith("$((", i):
            end = line.find("))", i)
            out.append("0")
            i = (end + 1) if end >= 0 else len(line)
        elif line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2 : j - 1])
            out.append("__SUBST__")
            i = j - 1
        elif c == "`":
            end = line.find("`", i + 1)
            end = end if end >= 0 else len(line)
            inner.append(line[i + 1 : end])
            out.append("__SUBST__")
            i = end
        else:
            out.append(c)
        i += 1
    return "".join(out), inner


ANGLE_PLACEHOLDER = re.compile(r"(?<![<\w])<[A-Za-z][\w .:/-]*>")


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one command line: words, without control operators and redirections
    (a redirection's target stays, marked with a leading '>' so paths written are known).
    `<job_id>`-style placeholders read as one word, not as redirections."""
    text, inner = _substitutions(ANGLE_PLACEHOLDER.sub("__SUBST__", line))
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        tokens = text.split()
    commands: list[list[str]] = [[]]
    redirect: str | None = None
    for token in tokens:
        if token in CONTROL:
            commands.append([])
        elif token in REDIRECT or token in ("<<", "<<-"):
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the fd of 2>…
            redirect = token
        elif redirect is not None:
            if redirect.startswith(">") or redirect.startswith("&>"):
                commands[-1].append(">" + token)
            redirect = None
        else:
            commands[-1].append(token)
    result = [c for c in commands if c]
    for sub in inner:
        result += split_commands(sub)
    return result


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def command_words(argv: list[str]) -> list[str]:
    """The command itself: leading assignments and wrappers (sudo, time, env …) removed;
    `.venv/bin/talkstack` and `python -m talkstack.cli` read as `talkstack`."""
    words = [w for w in argv if not w.startswith(">")]
    while words:
        if ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS:
            words = words[1:]
        elif words[0] == "env":
            words = words[1:]
            while words and (words[0].startswith("-") or ASSIGNMENT.match(words[0])):
                words = words[1:]
        else:
            break
    if not words:
        return []
    if PurePosixPath(words[0]).name == "talkstack":
        return ["talkstack", *words[1:]]
    if PurePosixPath(words[0]).name.startswith("python") and words[1:3] in (
        ["-m", "talkstack.cli"],
        ["-m", "talkstack"],
    ):
        return ["talkstack", *words[3:]]
    return words


def shell_commands(block: Block) -> list[Command]:
    """Every simple command of a shell block, with its page line."""
    found = []
    for offset, line in logical_lines(block.text, console=block.language == "console"):
        for argv in split_commands(line):
            found.append(Command(tuple(argv), block.body_line + offset))
    return found


def inline_code(page: Page) -> Iterator[tuple[int, str]]:
    """(line, content) of every inline code span in the page's prose."""
    for token in page.tokens:
        if token.type != "inline" or token.map is None or not token.children:
            continue
        lines = page.lines[token.map[0] : token.map[1]]
        for child in token.children:
            if child.type == "code_inline":
                yield token.map[0] + 1 + _find_line(lines, child.content), child.content


def links(page: Page) -> Iterator[tuple[int, str]]:
    """(line, target) of every Markdown link and image in the page's prose."""
    for token in page.tokens:
        if token.type != "inline" or token.map is None or not token.children:
            continue
        lines = page.lines[token.map[0] : token.map[1]]
        for child in token.children:
            target = child.attrGet("href") if child.type == "link_open" else None
            if child.type == "image":
                target = child.attrGet("src")
            if isinstance(target, str):
                yield token.map[0] + 1 + _find_line(lines, f"({target}"), target


def _find_line(lines: list[str], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    return 0


def github_slug(heading: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-', repeats -1, -2…"""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def anchors(page: Page) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for i, token in enumerate(page.tokens):
        if token.type == "heading_open":
            inline = page.tokens[i + 1]
            text = "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))
            found.add(github_slug(text, seen))
    return found


# --- what the docs are checked against --------------------------------------------------------------


@dataclass
class Reference:
    """The real things the docs name: the CLI's command tree, settings, the OpenAPI paths, the
    repository's files and the Makefile's targets."""

    root: Path = ROOT
    _ignored: dict[str, bool] = field(default_factory=dict)

    @cached_property
    def cli(self) -> Any:
        import typer

        from talkstack.cli import app

        return typer.main.get_command(app)

    @cached_property
    def cli_envvars(self) -> set[str]:
        found: set[str] = set()

        def walk(command: Any) -> None:
            for param in command.params:
                envvar = getattr(param, "envvar", None)
                found.update([envvar] if isinstance(envvar, str) else envvar or [])
            for sub in getattr(command, "commands", {}).values():
                walk(sub)

        walk(self.cli)
        return found

    @cached_property
    def settings(self) -> dict[str, str]:
        """Every setting's variable → its documented default."""
        from talkstack.cli.settings import groups
        from talkstack.settings.catalogue import default_of, env_name

        return {
            env_name(group, name, info): default_of(info)
            for group in groups()
            for name, info in group.model.model_fields.items()
        }

    @cached_property
    def sdk_test_envvars(self) -> set[str]:
        """Variables the TypeScript SDK's own tests read (documented in its README)."""
        found: set[str] = set()
        for path in (self.root / "clients" / "typescript").glob("*/*.ts"):
            found.update(re.findall(r"process\.env\.(TALKSTACK_[A-Z0-9_]+)", path.read_text()))
        return found

    @cached_property
    def test_envvars(self) -> set[str]:
        """Variables the suite, the benchmarks and scripts read themselves (an upstream checkout's
        path …): not settings of talkstack, but documented for whoever runs those."""
        found: set[str] = set()
        read = re.compile(r"(?:environ\.get|getenv|environ\[)\(?\s*[\"'](TALKSTACK_[A-Z0-9_]+)")
        for folder in ("tests", "bench", "scripts"):
            for path in (self.root / folder).rglob("*.py"):
                found.update(read.findall(path.read_text(encoding="utf-8")))
        return found

    @cached_property
    def environment_names(self) -> set[str]:
        return set(self.settings) | self.cli_envvars | self.sdk_test_envvars | self.test_envvars

    @cached_property
    def openapi(self) -> dict[str, set[str]]:
        document = json.loads((self.root / "schemas" / "openapi.json").read_text())
        return {path: {m.upper() for m in item} for path, item in document["paths"].items()}

    @cached_property
    def files(self) -> set[str]:
        """What a clone has: tracked files, and new ones not ignored (work in progress)."""
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=self.root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return {p for p in listed.split("\0") if p and (self.root / p).exists()}

    @cached_property
    def directories(self) -> set[str]:
        return {str(parent) for f in self.files for parent in PurePosixPath(f).parents if str(parent) != "."}

    @cached_property
    def top_level(self) -> set[str]:
        return {PurePosixPath(f).parts[0] for f in self.files}

    @cached_property
    def make_targets(self) -> set[str]:
        text = (self.root / "Makefile").read_text()
        found = set()
        for match in re.finditer(r"^([A-Za-z0-9_./ -]+?)\s*:(?![:=])", text, re.MULTILINE):
            found.update(match.group(1).split())
        return {t for t in found if not t.startswith(".") and "$" not in t}

    def exists(self, path: str) -> bool:
        path = path.rstrip("/")
        return path in self.files or path in self.directories

    def ignored(self, path: str) -> bool:
        """Git ignores it: a build output or local state (out/, cdk.out/, .venv/…), which a page may
        name without the repository holding it."""
        if path not in self._ignored:
            result = subprocess.run(
                ["git", "check-ignore", "-q", "--no-index", path], cwd=self.root, capture_output=True
            )
            self._ignored[path] = result.returncode == 0
        return self._ignored[path]


# --- the checks ---------------------------------------------------------------------------------------


def resolve_in_repo(start: str, target: str) -> str | None:
    """`target` seen from the folder `start` (relative to the repository root; "" is the root),
    normalised; None if it leaves the repository."""
    parts = [p for p in PurePosixPath(start).parts if p != "."]
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def folder_of(page: str) -> str:
    parent = str(PurePosixPath(page).parent)
    return "" if parent == "." else parent


def check_talkstack(ref: Reference, argv: list[str]) -> str | None:
    """argv starts with 'talkstack': every subcommand and option must exist; None when it does."""
    command = ref.cli
    path = ["talkstack"]
    words = argv[1:]
    positional = 0
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("[-"):  # `[--name …]`: an optional part of a synopsis
            word = word.strip("[]")
        if word in ("…", "...") or word.startswith("<"):
            return None  # "talkstack api …": prose, not a command
        if word in ("--help", "-h") and word in _help_names(command):
            return None
        if hasattr(command, "commands") and not word.startswith("-"):
            if word not in command.commands:
                return f"`{' '.join(path)}` has no command {word!r} (it has: {', '.join(command.commands)})"
            command = command.commands[word]
            path.append(word)
            i += 1
            continue
        if word.startswith("-") and word != "-":
            name, _, inline = word.partition("=")
            param = _option(command, name)
            if param is None:
                return f"`{' '.join(path)}` has no option {name}"
            if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                value = inline or (words[i + 1] if i + 1 < len(words) else None)
                problem = _check_value(param, value)
                if problem:
                    return f"`{' '.join(path)} {name}`: {problem}"
                i += 0 if inline else 1
            elif inline:
                return f"`{' '.join(path)} {name}` is a flag and takes no value"
        else:
            positional += 1
            arguments = [p for p in command.params if p.param_type_name == "argument"]
            if not any(p.nargs == -1 for p in arguments) and positional > sum(p.nargs for p in arguments):
                return f"`{' '.join(path)}` takes no argument {word!r}"
        i += 1
    return None


def _help_names(command: Any) -> list[str]:
    return ["--help"] + (
        ["-h"] if "-h" in getattr(command, "context_settings", {}).get("help_option_names", []) else []
    )


def _option(command: Any, name: str) -> Any:
    for param in command.params:
        if param.param_type_name == "option" and (name in param.opts or name in param.secondary_opts):
            return param
    return None


def _check_value(param: Any, value: str | None) -> str | None:
    if value is None:
        return "needs a value"
    choices = getattr(param.type, "choices", None)
    if choices and not PLACEHOLDER.search(value) and value not in [str(c) for c in choices]:
        return f"{value!r} is not one of {', '.join(map(str, choices))}"
    return None


def input_values(ref: Reference, argv: list[str]) -> list[str]:
    """The values a talkstack command reads as input files (--image, --audio, a manifest …)."""
    command = ref.cli
    words = argv[1:]
    values = []
    i = 0
    positional = 0
    while i < len(words):
        word = words[i]
        if hasattr(command, "commands") and word in command.commands:
            command = command.commands[word]
        elif word.startswith("-") and word != "-":
            name, _, inline = word.partition("=")
            param = _option(command, name)
            if param is not None and not getattr(param, "is_flag", False):
                value = inline or (words[i + 1] if i + 1 < len(words) else "")
                if param.name in INPUT_PARAMS:
                    values.append(value)
                i += 0 if inline else 1
        else:
            arguments = [p for p in command.params if p.param_type_name == "argument"]
            if positional < len(arguments) and arguments[positional].name in INPUT_PARAMS:
                values.append(word)
            positional += 1
        i += 1
    return values


def check_make(ref: Reference, argv: list[str]) -> str | None:
    for word in argv[1:]:
        if word.startswith("-") or ASSIGNMENT.match(word) or PLACEHOLDER.search(word):
            continue
        if word not in ref.make_targets:
            return f"the Makefile has no target {word!r}"
    return None


def check_endpoint(ref: Reference, path: str, method: str | None) -> str | None:
    path = path.split("?")[0].split("#")[0].rstrip(".:")
    prefix = path.endswith(("…", "...", "*"))
    path = path.rstrip("…*.").rstrip("/") if prefix else path.rstrip("/")
    segments = path.split("/")
    matches = []
    for template, methods in ref.openapi.items():
        parts = template.split("/")
        if len(parts) < len(segments) or (not prefix and len(parts) != len(segments)):
            continue
        if all(_segment_matches(s, t) for s, t in zip(segments, parts, strict=False)):
            matches.append((template, methods))
    if not matches:
        return f"{path}{'…' if prefix else ''} is not a path of schemas/openapi.json"
    if method and not any(method in methods for _, methods in matches):
        allowed = sorted(set().union(*(m for _, m in matches)))
        return f"{method} {path}: schemas/openapi.json has {', '.join(allowed)} only"
    return None


def _segment_matches(doc: str, template: str) -> bool:
    if template.startswith("{"):
        return doc != ""
    if PLACEHOLDER.search(doc) or doc.startswith(":"):
        return False
    return doc == template


def curl_request(argv: list[str]) -> tuple[str | None, list[str]]:
    """(method, URLs) of a curl command."""
    method = None
    data = False
    urls = []
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in ("-X", "--request"):
            method = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        elif word.startswith("-X") and len(word) > 2:
            method = word[2:]
        elif word in ("-d", "--data", "--data-binary", "--data-raw", "--json", "-F", "--form", "-T"):
            data = True
            i += 1
        elif word in ("-H", "--header", "-o", "--output", "-u", "--user", "-w", "--write-out"):
            i += 1
        elif "/v1/" in word:
            urls.append(word)
        i += 1
    return method or ("POST" if data else "GET"), urls


def path_words(argv: list[str]) -> Iterator[str]:
    """Words of a command that could be paths: arguments, option values, redirect targets."""
    for word in argv:
        word = word.lstrip(">")
        if word.startswith("-") or ASSIGNMENT.match(word):
            _, _, word = word.partition("=")
        if word:
            yield word


def looks_like_repo_path(ref: Reference, word: str) -> bool:
    """A word that names a file or folder of this repository: it starts with a top-level entry and
    ends with a file extension or a '/' (`talkstack/modal-token` is a secret's name, not a path)."""
    if PLACEHOLDER.search(word) or "://" in word or word.startswith(("/", "~", "@")) or "/" not in word:
        return False
    if not (word.endswith("/") or "." in PurePosixPath(word).name or ref.exists(word)):
        return False
    return PurePosixPath(word).parts[0] in ref.top_level


def check_path(ref: Reference, word: str, written: set[str]) -> str | None:
    path = word.rstrip("/")
    if path in written or ref.exists(path) or ref.ignored(path):
        return None
    if any(ch in word for ch in "*?[") and any(fnmatch.fnmatch(f, word) for f in ref.files):
        return None
    return f"{word} is not in the repository"


def outputs_written(argv: list[str]) -> set[str]:
    """Paths a command writes (so later commands on the page may read them)."""
    words = [w for w in argv if not w.startswith(">")]
    found = {w[1:] for w in argv if w.startswith(">")}
    for i, word in enumerate(words):
        if word in ("-o", "--output", "--write", "--poster") and i + 1 < len(words):
            found.add(words[i + 1])
        elif word.startswith(("--output=", "--write=", "-o=")):
            found.add(word.split("=", 1)[1])
    if words and words[0] in ("mkdir", "touch", "cp", "mv"):
        found.update(w for w in words[1:] if not w.startswith("-"))
    if words and words[0] in ("aws",) and "cp" in words:
        found.add(words[-1])
    return {w.rstrip("/") for w in found}


VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
DEFINES = re.compile(r"(?:^|[\s;&|(])(?:export\s+|local\s+|declare\s+\S*\s*)?([A-Za-z_][A-Za-z0-9_]*)=")
LOOP = re.compile(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)")
# `read -r url key` sets every name it lists.
READ = re.compile(r"\bread(?:\s+-\w+)*((?:\s+[A-Za-z_][A-Za-z0-9_]*)+)")
SHELL_VARIABLES = frozenset(
    {"HOME", "PATH", "PWD", "USER", "SHELL", "TMPDIR", "OLDPWD", "RANDOM", "VIRTUAL_ENV"}
)


def undefined_variables(ref: Reference, line: str, defined: set[str]) -> list[str]:
    """`$NAME`s a command line uses that nothing on the page set (nor the environment a reader has:
    the shell's own, AWS's `AWS_*`, talkstack's variables)."""
    unquoted = re.sub(r"'[^']*'", "''", line)
    defined.update(DEFINES.findall(unquoted))
    defined.update(LOOP.findall(unquoted))
    for names in READ.findall(unquoted):
        defined.update(names.split())
    missing = []
    for name in VARIABLE.findall(unquoted):
        if name in defined or name in SHELL_VARIABLES or name.startswith("AWS_"):
            continue
        if name in ref.environment_names:
            continue
        missing.append(name)
    return missing


def check_shell_block(
    ref: Reference, block: Block, written: set[str], defined: set[str] | None = None
) -> list[Problem]:
    problems = []
    defined = set() if defined is None else defined
    for offset, line in logical_lines(block.text, console=block.language == "console"):
        for name in undefined_variables(ref, line, defined):
            problems.append(
                Problem(block.page, block.body_line + offset, f"${name} is not set anywhere on this page")
            )
    base = ""  # folder the commands run in, relative to the repository root; None: unknown
    for command in shell_commands(block):
        argv = command_words(list(command.argv))
        if not argv:
            continue

        def report(message: str, line: int = command.line) -> None:
            problems.append(Problem(block.page, line, message))

        if argv[0] == "talkstack":
            message = check_talkstack(ref, argv)
            if message:
                report(message)
            for value in input_values(ref, argv):
                if PLACEHOLDER.search(value) or value in written:
                    continue
                resolved = resolve_in_repo(base, value) if base is not None else value
                if resolved is None or not (ref.exists(resolved) or resolved in written):
                    report(f"input {value} is neither a repository file nor written earlier on this page")
        elif argv[0] == "make":
            message = check_make(ref, argv)
            if message:
                report(message)
        elif argv[0] == "curl":
            method, urls = curl_request(argv)
            for url in urls:
                message = check_endpoint(ref, "/v1/" + url.split("/v1/", 1)[1], method)
                if message:
                    report(message)
        if argv[0] == "cd":
            target = argv[1] if len(argv) > 1 else ""
            base = resolve_in_repo(base, target) if base is not None and target else None
            if base and not ref.exists(base) and base not in written:
                report(f"cd {target}: not a folder of the repository")
                base = None
            continue
        if base is not None:
            for word in path_words(list(command.argv)):
                resolved = resolve_in_repo(base, word) if "/" in word and "://" not in word else None
                if resolved is None and word.startswith("../"):
                    report(f"{word} leaves the repository")
                elif resolved is not None and looks_like_repo_path(ref, resolved):
                    message = check_path(ref, resolved, written)
                    if message:
                        report(message)
        written |= outputs_written(list(command.argv))
    return problems


def check_python_block(ref: Reference, block: Block) -> list[Problem]:
    try:
        tree = ast.parse(block.text, filename=block.where())
    except SyntaxError as exc:
        return [Problem(block.page, block.body_line + (exc.lineno or 1) - 1, f"Python: {exc.msg}")]
    problems = []
    for node in ast.walk(tree):
        line = block.body_line + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "talkstack":
            for alias in node.names:
                message = _import_problem(node.module or "", alias.name)
                if message:
                    problems.append(Problem(block.page, line, message))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "talkstack":
                    message = _import_problem(alias.name, None)
                    if message:
                        problems.append(Problem(block.page, line, message))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and looks_like_repo_path(ref, node.value)
        ):
            message = check_path(ref, node.value, set())
            if message:
                problems.append(Problem(block.page, line, message))
    return problems


def _import_problem(module: str, name: str | None) -> str | None:
    import importlib

    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        return f"import {module}: {exc}"
    if name is not None and name != "*" and not hasattr(imported, name):
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            return f"from {module} import {name}: {module} has no {name}"
    return None


def check_settings_named(ref: Reference, page: Page) -> list[Problem]:
    """Every TALKSTACK_… name on the page (prose too) is a setting, a CLI option's variable or one the
    SDK's tests read; `TALKSTACK_QUALITY_…`/`TALKSTACK_CDK_*` name a family that must exist."""
    problems = []
    known = ref.environment_names
    for number, line in enumerate(page.lines, start=1):
        for match in SETTING.finditer(line):
            name = match.group(0)
            after = line[match.end() : match.end() + 1]
            if name.endswith("_") or after in ("*", "…", "<", "{"):
                if not any(k.startswith(name) for k in known):
                    problems.append(Problem(page.path, number, f"no setting starts with {name}"))
            elif name not in known:
                problems.append(Problem(page.path, number, f"{name} is not a setting"))
    return problems


def check_endpoints_named(ref: Reference, page: Page) -> list[Problem]:
    problems = []
    for number, line in enumerate(page.lines, start=1):
        for match in ENDPOINT.finditer(line):
            message = check_endpoint(ref, match.group("path"), match.group("method"))
            if message:
                problems.append(Problem(page.path, number, message))
    return problems


def check_links(ref: Reference, page: Page, pages: dict[str, Page]) -> list[Problem]:
    problems = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http(s):, mailto: — not checked offline
        path, _, anchor = target.partition("#")
        resolved = resolve_in_repo(folder_of(page.path), path) if path else page.path
        if resolved is None:
            problems.append(Problem(page.path, line, f"link {target} leaves the repository"))
            continue
        if path and not ref.exists(resolved):
            problems.append(Problem(page.path, line, f"link {target}: {resolved} is not in the repository"))
            continue
        if anchor and resolved.endswith(".md"):
            linked = pages.get(resolved) or Page(resolved, (ref.root / resolved).read_text(encoding="utf-8"))
            if anchor not in anchors(linked):
                problems.append(
                    Problem(page.path, line, f"link {target}: {resolved} has no heading #{anchor}")
                )
    return problems


def check_inline_code(ref: Reference, page: Page) -> list[Problem]:
    """Commands and paths quoted in prose: `talkstack …`, `make …` and repository paths."""
    problems = []
    for line, code in inline_code(page):
        words = [w.strip("[]") for w in code.split()]  # `[--name …]`: an optional part
        message = None
        if words and words[0] == "talkstack" and len(words) > 1:
            message = check_talkstack(ref, [w for w in words if w])
        elif len(words) == 1 and code.startswith("../"):
            resolved = resolve_in_repo(folder_of(page.path), code)
            if resolved is None:
                message = f"{code} leaves the repository (a clone has only the repository)"
            else:
                message = check_path(ref, resolved, set())
        elif words and words[0] == "make" and len(words) > 1:
            message = check_make(ref, words)
        elif len(words) == 1 and looks_like_repo_path(ref, code.split(":")[0]):
            message = check_path(ref, code.split(":")[0], set())
        if message:
            problems.append(Problem(page.path, line, message))
    return problems


def check_page(ref: Reference, page: Page, pages: dict[str, Page] | None = None) -> list[Problem]:
    """Every reference check on one page."""
    problems: list[Problem] = []
    written: set[str] = set()
    defined: set[str] = set()
    for block, tag_problem in page.blocks_and_problems():
        if tag_problem:
            problems.append(tag_problem)
        if block.tag == "skip" or block.language not in CHECKED_LANGUAGES:
            continue
        if block.language == "python":
            problems += check_python_block(ref, block)
        else:
            problems += check_shell_block(ref, block, written, defined)
    problems += check_settings_named(ref, page)
    problems += check_endpoints_named(ref, page)
    problems += check_links(ref, page, pages or {})
    problems += check_inline_code(ref, page)
    return sorted(set(problems), key=lambda p: (p.page, p.line, p.message))


# --- numbers the code defines ---------------------------------------------------------------------

NUMBER_WORDS = {
    word: n
    for n, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen".split()  # noqa: SIM905
    )
}
LOCAL_URL = re.compile(r"(?:127\.0\.0\.1|localhost):(\d{2,5})(\S*)")


@dataclass(frozen=True)
class Numbers:
    """What the code says: the local ports, the Lambda handlers, the turbo step count."""

    endpoint_port: int
    api_port: int
    demo_port: int
    handlers: tuple[str, ...]
    turbo_steps: int

    @classmethod
    def from_code(cls) -> Numbers:
        from talkstack.local.resources import HANDLERS
        from talkstack.pipeline.plan import GPU_AVATAR_STEPS
        from talkstack.settings.local import API_PORT_OFFSET, DEFAULT_PORT, DEMO_PORT

        return cls(
            DEFAULT_PORT, DEFAULT_PORT + API_PORT_OFFSET, DEMO_PORT, HANDLERS, GPU_AVATAR_STEPS["turbo"]
        )


def fence_ranges(page: Page) -> list[tuple[int, int, str]]:
    """(first line, last line, content) of every fenced block, 1-based."""
    return [
        (t.map[0] + 1, t.map[1], t.content) for t in page.tokens if t.type == "fence" and t.map is not None
    ]


def check_ports(numbers: Numbers, page: Page) -> list[Problem]:
    """Local URLs use the ports `talkstack up` serves: the REST API (…/v1, …/docs, an API URL) on its
    API port, AWS's endpoint on the endpoint port; any other 4xxx port must be one of the local stack's.
    A block that starts a stack on its own `--port N` may use N and its API port."""
    offset = numbers.api_port - numbers.endpoint_port
    problems = []
    fences = fence_ranges(page)
    for number, line in enumerate(page.lines, start=1):
        own: set[int] = set()
        for first, last, content in fences:
            if first <= number <= last:
                for port in re.findall(r"(?:--port[ =]|TALKSTACK_LOCAL_PORT=)(\d+)", content):
                    own |= {int(port), int(port) + offset}
        # Prose about a stack started on another port ("the stack started below on port 4700").
        for port in re.findall(r"\bon port (\d+)", line):
            own |= {int(port), int(port) + offset}
        for match in LOCAL_URL.finditer(line):
            port, rest = int(match.group(1)), match.group(2)
            before = line[max(0, match.start() - 40) : match.start()].lower()
            if port in own:
                continue
            if rest.startswith(("/v1", "/docs")) or any(
                k in before for k in ("api_url", "baseurl", "apiurl", "--url", "rest api")
            ):
                expected, what = numbers.api_port, "the REST API"
            elif any(k in before for k in ("endpoint_url", "endpoint-url", "endpoint")):
                expected, what = numbers.endpoint_port, "the local AWS endpoint"
            elif 4000 <= port < 5000:
                if port in (numbers.endpoint_port, numbers.api_port, numbers.demo_port):
                    continue
                expected, what = numbers.endpoint_port, "a local stack port"
            else:
                continue
            if port != expected:
                problems.append(
                    Problem(
                        page.path,
                        number,
                        f"port {port}: {what} is on {expected} (talkstack/settings/local.py)",
                    )
                )
    return problems


def check_function_count(numbers: Numbers, page: Page) -> list[Problem]:
    """ "the N functions": the local stack creates one Lambda per handler (talkstack/local/resources.py)."""
    problems = []
    for number, line in enumerate(page.lines, start=1):
        for match in re.finditer(r"\b(\w+)\s+(?:Lambda\s+)?functions\b", line, re.IGNORECASE):
            word = match.group(1).lower()
            count = NUMBER_WORDS.get(word, int(word) if word.isdigit() else None)
            if count is not None and count != len(numbers.handlers):
                problems.append(
                    Problem(
                        page.path,
                        number,
                        f"{match.group(0)!r}: there are {len(numbers.handlers)} "
                        "(HANDLERS in talkstack/local/resources.py)",
                    )
                )
    return problems


def check_handler_table(numbers: Numbers, page: Page) -> list[Problem]:
    """A table whose first column is `handler` lists every handler, and only those."""
    problems = []
    tokens = page.tokens
    for i, token in enumerate(tokens):
        if token.type != "table_open" or token.map is None:
            continue
        cells: list[list[str]] = []
        for t in tokens[i:]:
            if t.type == "table_close":
                break
            if t.type == "tr_open":
                cells.append([])
            elif t.type == "inline" and cells:
                cells[-1].append(t.content.strip().strip("`"))
        if not cells or cells[0][:1] != ["handler"]:
            continue
        listed = {row[0] for row in cells[1:] if row}
        missing = [h for h in numbers.handlers if h not in listed]
        # Handlers only a deployed stack has (the API Gateway authorizer) live in aws/lambda too.
        extra = sorted(
            h for h in listed - set(numbers.handlers) if not (ROOT / "aws/lambda" / f"{h}.py").exists()
        )
        if missing:
            problems.append(Problem(page.path, token.map[0] + 1, f"handler table lacks {', '.join(missing)}"))
        if extra:
            problems.append(
                Problem(page.path, token.map[0] + 1, f"handler table lists unknown {', '.join(extra)}")
            )
    return problems


TURBO_STEPS = re.compile(r"\bturbo\b[^.;|]{0,40}?(?<![\d–-])\b(\d+)\s+steps\b", re.IGNORECASE)


def check_turbo_steps(numbers: Numbers, page: Page) -> list[Problem]:
    problems = []
    for number, line in enumerate(page.lines, start=1):
        for match in TURBO_STEPS.finditer(line):
            if int(match.group(1)) != numbers.turbo_steps:
                problems.append(
                    Problem(
                        page.path,
                        number,
                        f"turbo: {match.group(1)} steps, but a turbo avatar job runs {numbers.turbo_steps} "
                        "(GPU_AVATAR_STEPS in talkstack/pipeline/plan.py)",
                    )
                )
    return problems


SETTING_DEFAULT = re.compile(
    r"`?(?P<name>TALKSTACK_[A-Z0-9_]+)`?,?\s*(?:\(|\s+)(?:default:?\s*)`?(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>[a-z]+)?"
    r"|`?(?P<name2>TALKSTACK_[A-Z0-9_]+)`?\s*\((?P<value2>-?\d+(?:\.\d+)?)\s*(?P<unit2>[a-z]+)?\)"
)
SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}


def check_setting_defaults(ref: Reference, page: Page) -> list[Problem]:
    """`TALKSTACK_X` (N) / `TALKSTACK_X` (default N) / `TALKSTACK_X`, default N: N is the setting's
    default (for a `…_S` setting, N may carry a unit: 1 h is 3600)."""
    problems = []
    for number, line in enumerate(page.lines, start=1):
        for match in SETTING_DEFAULT.finditer(line):
            name = match.group("name") or match.group("name2")
            value = match.group("value") or match.group("value2")
            unit = match.group("unit") or match.group("unit2")
            default = ref.settings.get(name)
            if default is None:
                continue
            stated = float(value)
            if unit and name.endswith("_S") and unit in SECONDS:
                stated *= SECONDS[unit]
            try:
                same = float(default) == stated
            except ValueError:
                same = False
            if not same:
                problems.append(
                    Problem(
                        page.path,
                        number,
                        f"{name}: the page says {value}{' ' + unit if unit else ''}, "
                        f"its default is {default or '(unset)'}",
                    )
                )
    return problems


def check_numbers(ref: Reference, numbers: Numbers, page: Page) -> list[Problem]:
    return sorted(
        set(
            check_ports(numbers, page)
            + check_function_count(numbers, page)
            + check_handler_table(numbers, page)
            + check_turbo_steps(numbers, page)
            + check_setting_defaults(ref, page)
        ),
        key=lambda p: (p.page, p.line, p.message),
    )
