"""Smoke-test every GPU app on Modal: deploy, render with each model, print a table.

    make gpu-smoke                              # = python scripts/gpu_smoke.py
    python scripts/gpu_smoke.py --skip-deploy --only multitalk,ltx-video

For each app it runs `modal deploy -m modal_workers.<app>` (so the images are built and cached once),
then each model's smoke entrypoint with `modal run` and the bundled sample media (talkstack/assets):
voice speaks a sentence, avatar renders a 3 s clip and a 6 s streaming clip, video a 3 s and a 6 s
clip. The avatar and video entrypoints write a JSON report (modal_workers.common.SmokeReport) with
the container's load and render seconds; this script adds the wall-clock time of each command,
derives the cold start (first call − load − render) and prices the GPU-seconds at Modal's list price
(talkstack.pipeline.cost, the table the jobs' cost estimates use). Videos land in out/gpu-smoke/.

Needs a Modal token (`modal token new`) and the weights volume filled
(`modal run -m modal_workers.weights --models all`). docs/gpu-workers.md walks through both.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modal_workers.common import SmokeReport  # noqa: E402
from talkstack.pipeline.cost import MODAL_GPU_USD_PER_S, gpu_price_key  # noqa: E402

SAMPLES = REPO / "talkstack" / "assets" / "samples"
PHOTO, SPEECH = SAMPLES / "portrait.png", SAMPLES / "speech.wav"
VOICE_TEXT = "Hello! This is talkstack speaking, from a GPU on Modal."
VIDEO_PROMPT = "A woman in a red coat walks along a rainy street at night, neon reflections, film look."

Runner = Callable[[list[str]], int]
"""Runs one command and returns its exit status: the Modal boundary (subprocess by default)."""


@dataclass(frozen=True)
class Case:
    app: str
    """Module under modal_workers/."""
    model: str
    turbo: bool = False

    @property
    def label(self) -> str:
        return f"{self.model}{' turbo' if self.turbo else ''}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-")


CASES = [
    Case("voice", "chatterbox"),
    Case("voice", "indextts2"),
    Case("avatar", "multitalk"),
    Case("avatar", "infinitetalk"),
    Case("video", "ltx-video"),
    Case("video", "wan2.2-ti2v-5b"),
]


def deploy_command(app: str, modal: str = "modal") -> list[str]:
    return [modal, "deploy", "-m", f"modal_workers.{app}"]


def case_command(case: Case, outdir: Path, modal: str = "modal") -> list[str]:
    """The `modal run` line of one case; avatar and video write their report to report_path()."""
    command = [modal, "run", "-m", f"modal_workers.{case.app}", "--model", case.model]
    if case.app == "voice":
        command += ["--text", VOICE_TEXT, "--output", str(outdir / f"{case.slug}.wav")]
        if case.model == "indextts2":  # it ships no default voice
            command += ["--reference", str(SPEECH)]
        return command
    if case.app == "avatar":
        command += ["--image", str(PHOTO), "--audio", str(SPEECH)] + (["--turbo"] if case.turbo else [])
    else:
        command += ["--prompt", VIDEO_PROMPT]
    return [*command, "--output", str(outdir), "--report", str(report_path(case, outdir))]


def report_path(case: Case, outdir: Path) -> Path:
    return outdir / f"{case.slug}.json"


@dataclass(frozen=True)
class Row:
    case: str
    clip: str
    ok: bool
    wall_s: float
    cold_start_s: float | None = None
    load_s: float | None = None
    render_s: float | None = None
    frames: int | None = None
    gpu: str | None = None
    cost_usd: float | None = None
    usd_per_output_min: float | None = None
    note: str = ""


def price_per_s(gpu: str | None) -> float | None:
    key = gpu_price_key(gpu)
    return MODAL_GPU_USD_PER_S.get(key) if key else None


def rows_for(case: Case, status: int, wall_s: float, report: SmokeReport | None) -> list[Row]:
    """Table rows of one case. A cold call pays container start + load + render; a warm one only the
    render. $/output-minute is the render's GPU-seconds per second of video, at the GPU's price."""
    if status != 0 or (report is None and case.app != "voice"):
        return [Row(case.label, "—", False, wall_s, note=f"exit {status}" if status else "no report")]
    if report is None:  # voice: one command, one clip; its entrypoint reports no split
        return [Row(case.label, "speech", True, wall_s, note="wall-clock only")]
    rows = []
    for render in report.renders:
        price = price_per_s(render.gpu)
        per_output_s = render.render_s / render.duration_s
        call_s = render.call_s if render.call_s is not None else render.render_s
        cold = max(0.0, call_s - render.load_s - render.render_s) if render.first_input else None
        billed = call_s if render.first_input else render.render_s
        rows.append(
            Row(
                case=case.label,
                clip=f"{render.duration_s:g} s",
                ok=render.frames > 0,
                wall_s=call_s,
                cold_start_s=cold,
                load_s=render.load_s if render.first_input else None,
                render_s=render.render_s,
                frames=render.frames,
                gpu=render.gpu,
                cost_usd=None if price is None else billed * price,
                usd_per_output_min=None if price is None else per_output_s * 60 * price,
                note="; ".join(render.warnings),
            )
        )
    return rows


def _cell(value: object, fmt: str = "{:.1f}") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "ok" if value else "FAIL"
    return fmt.format(value) if isinstance(value, float) else str(value)


COLUMNS = [
    ("case", "case", "{}"),
    ("clip", "clip", "{}"),
    ("ok", "", "{}"),
    ("frames", "frames", "{}"),
    ("cold_start_s", "cold start s", "{:.0f}"),
    ("load_s", "load s", "{:.0f}"),
    ("render_s", "render s", "{:.1f}"),
    ("wall_s", "call s", "{:.1f}"),
    ("cost_usd", "cost $", "{:.3f}"),
    ("usd_per_output_min", "$/output min", "{:.2f}"),
    ("gpu", "GPU", "{}"),
    ("note", "note", "{}"),
]


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (paste it into docs/gpu-workers.md, "Measured figures")."""
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(getattr(row, f), fmt) for f, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def run_subprocess(command: list[str]) -> int:
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO, check=False).returncode


def smoke(
    cases: Sequence[Case],
    outdir: Path,
    *,
    deploy: bool = True,
    runner: Runner = run_subprocess,
    clock: Callable[[], float] = time.perf_counter,
    modal: str = "modal",
) -> list[Row]:
    outdir.mkdir(parents=True, exist_ok=True)
    if deploy:
        for app in dict.fromkeys(case.app for case in cases):
            if runner(deploy_command(app, modal)) != 0:
                raise SystemExit(f"modal deploy of modal_workers.{app} failed; nothing was smoke-tested")
    rows: list[Row] = []
    for case in cases:
        report_file = report_path(case, outdir)
        report_file.unlink(missing_ok=True)  # never read an old run's report
        started = clock()
        status = runner(case_command(case, outdir, modal))
        wall_s = clock() - started
        report = SmokeReport.model_validate_json(report_file.read_text()) if report_file.exists() else None
        rows += rows_for(case, status, wall_s, report)
    return rows


def select(only: str) -> list[Case]:
    if not only:
        return list(CASES)
    wanted = {name.strip() for name in only.split(",")}
    unknown = wanted - {c.model for c in CASES} - {c.app for c in CASES}
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))}")
    return [c for c in CASES if c.model in wanted or c.app in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="models or apps, comma-separated (default: all)")
    parser.add_argument("--turbo", action="store_true", help="also run each avatar model with turbo")
    parser.add_argument("--skip-deploy", action="store_true", help="the apps are deployed already")
    parser.add_argument("--output", type=Path, default=REPO / "out" / "gpu-smoke")
    parser.add_argument("--modal", default="modal", help="the modal CLI to run")
    args = parser.parse_args(argv)
    cases = select(args.only)
    if args.turbo:
        cases += [Case(c.app, c.model, turbo=True) for c in cases if c.app == "avatar"]
    rows = smoke(cases, args.output, deploy=not args.skip_deploy, modal=args.modal)
    print()
    print(table(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
