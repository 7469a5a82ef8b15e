"""Run a page's `<!-- docs-test: runnable -->` blocks as a reader would: in order, in one shell session
(what one block exports or `cd`s into, the next sees), in a fresh directory holding what a clone
holds, with the project's virtual environment, against a real `talkstack up` started as a user would.

Substitutions, and only these (a reader runs the same commands; the test cannot block on them):
- `talkstack up` waits for the test's own running stack instead of starting one in the foreground
  (a reader runs it in a second terminal; it would block here until Ctrl-C);
- the stack runs on free ports, so the default ports in URLs (127.0.0.1:4567, :4577, the demo's
  :4568) are rewritten to the stack's;
- `make` never rebuilds the virtual environment (`make -o .venv/.installed`): `.venv` is the one this
  test runs in, linked into the directory.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docs.doccheck import ROOT, Block, Page, Reference, logical_lines

BLOCK_TIMEOUT_S = 480
READY_TIMEOUT_S = 120


def free_port_pair(offset: int) -> int:
    """A port P with P and P + offset both free (the stack's endpoint and its REST API)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + offset > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def clean_environment() -> dict[str, str]:
    """The test process's environment without talkstack's and AWS's variables (an earlier test may
    have set them), the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKSTACK_", "AWS_"))}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "250"
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Ports:
    endpoint: int
    api: int
    demo: int

    @classmethod
    def free(cls) -> Ports:
        from talkstack.settings.local import API_PORT_OFFSET

        endpoint = free_port_pair(API_PORT_OFFSET)
        demo = free_port_pair(API_PORT_OFFSET)
        return cls(endpoint, endpoint + API_PORT_OFFSET, demo)

    def substitute(self, text: str) -> str:
        from talkstack.settings.local import API_PORT_OFFSET, DEFAULT_PORT, DEMO_PORT

        ports = {DEFAULT_PORT: self.endpoint, DEFAULT_PORT + API_PORT_OFFSET: self.api, DEMO_PORT: self.demo}
        for host in ("127.0.0.1", "localhost"):
            for default, port in ports.items():
                text = text.replace(f"{host}:{default}", f"{host}:{port}")
        return text


class StackProcess:
    """`talkstack up` in a subprocess on free ports, as a user starts it (from the checkout under test)."""

    def __init__(self, ports: Ports, log: Path, root: Path = ROOT) -> None:
        self.ports = ports
        self.log = log
        env = clean_environment() | {
            "PYTHONPATH": str(root),
            "TALKSTACK_LOCAL_PORT": str(ports.endpoint),
        }
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.prefix) / "bin" / "talkstack"), "up"],
            cwd=log.parent,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "local stack is up" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"`talkstack up` did not start:\n{self.output()[-4000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


@dataclass
class BlockFailure(Exception):
    block: Block
    command: str
    returncode: int | None
    output: str

    def __str__(self) -> str:
        status = "timed out" if self.returncode is None else f"exit status {self.returncode}"
        return (
            f"{self.block.where()}: runnable block failed ({status})\n"
            f"--- the block, as run ---\n{self.command}\n--- its output (last 6000 characters) ---\n"
            f"{self.output[-6000:]}"
        )


PRELUDE = r"""set -eo pipefail
if [ -f "$DOCS_TEST_STATE/env" ]; then source "$DOCS_TEST_STATE/env"; fi
if [ -f "$DOCS_TEST_STATE/cwd" ]; then cd "$(cat "$DOCS_TEST_STATE/cwd")"; fi
trap 'export -p > "$DOCS_TEST_STATE/env"; pwd > "$DOCS_TEST_STATE/cwd"' EXIT
talkstack() {
  if [ "${1:-}" = up ]; then
    for _ in $(seq 1 300); do
      (exec 3<>"/dev/tcp/127.0.0.1/$DOCS_TEST_STACK_PORT") 2>/dev/null && break
      sleep 0.2
    done
    echo "(docs test: \`talkstack up\` is running at http://127.0.0.1:$DOCS_TEST_STACK_PORT)"
  else
    command talkstack "$@"
  fi
}
make() { command make -o .venv/.installed "$@"; }
"""


class PageRun:
    """One page's runnable blocks, in order, in a fresh clone-like directory."""

    def __init__(self, page: Page, workdir: Path, ports: Ports, reference: Reference) -> None:
        self.page = page
        self.workdir = workdir
        self.ports = ports
        self.state = workdir.parent / f"{workdir.name}.state"
        self.state.mkdir(parents=True, exist_ok=True)
        for name in sorted(reference.files):  # what a clone has (and new, unignored files)
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(reference.root / name, target)
        (workdir / ".venv").symlink_to(sys.prefix, target_is_directory=True)
        self.env = clean_environment() | {
            "PYTHONPATH": str(workdir),
            "TALKSTACK_LOCAL_PORT": str(ports.endpoint),
            "TALKSTACK_DEMO_PORT": str(ports.demo),
            "DOCS_TEST_STATE": str(self.state),
            "DOCS_TEST_STACK_PORT": str(ports.endpoint),
        }

    def script(self, block: Block, index: int) -> str:
        if block.language == "python":
            source = self.state / f"block-{index}.py"
            source.write_text(self.ports.substitute(block.text))
            return f"python {shlex.quote(str(source))}"
        if block.language == "console":
            return "\n".join(
                line for _, line in logical_lines(self.ports.substitute(block.text), console=True)
            )
        return self.ports.substitute(block.text)

    def run(self) -> list[tuple[Block, str]]:
        """Run every runnable block; (block, output) for each. Raises BlockFailure at the first failure.
        What a block leaves running in the background (`… &`) lives until the page is done."""
        done = []
        sessions: list[int] = []
        try:
            for index, block in enumerate(b for b in self.page.blocks() if b.tag == "runnable"):
                body = self.script(block, index)
                log = self.state / f"block-{index}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        ["bash", "-c", PRELUDE + body],
                        cwd=self.workdir,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                    sessions.append(process.pid)
                    try:
                        returncode: int | None = process.wait(timeout=BLOCK_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        returncode = None
                output = log.read_text(errors="replace")
                if returncode != 0:
                    raise BlockFailure(block, body, returncode, output)
                done.append((block, output))
        finally:
            for session in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(session, signal.SIGTERM)
        return done
