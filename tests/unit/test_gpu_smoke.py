"""scripts/gpu_smoke.py without Modal: the `modal deploy` / `modal run` commands are replaced at the
script's one boundary (its `runner`), by a fake that writes the report each smoke entrypoint would
write. The command lines themselves are parsed by Modal's own CLI code against the real entrypoints."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

from modal_workers.common import SmokeRender, SmokeReport
from talkstack.pipeline.cost import MODAL_GPU_USD_PER_S

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
gpu_smoke = importlib.import_module("gpu_smoke")

H100 = "NVIDIA H100 80GB HBM3"


def _render(seconds: float, *, first: bool, load_s: float, render_s: float, call_s: float) -> SmokeRender:
    return SmokeRender(
        model="multitalk",
        options={"max_duration_s": seconds},
        gpu=H100,
        frames=int(seconds * 25),
        duration_s=seconds,
        load_s=load_s,
        render_s=render_s,
        first_input=first,
        call_s=call_s,
    )


class FakeModal:
    """Records each command; `modal run` of avatar/video writes the report its entrypoint would."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, command: list[str]) -> int:
        self.commands.append(command)
        if command[1] == "run" and "--report" in command:
            model = command[command.index("--model") + 1]
            if model in self.fail:
                return 1
            report = SmokeReport(
                app="talkstack-x",
                gpu="H100",
                renders=[
                    _render(3.0, first=True, load_s=200.0, render_s=60.0, call_s=300.0),
                    _render(6.0, first=False, load_s=200.0, render_s=110.0, call_s=111.0),
                ],
            )
            Path(command[command.index("--report") + 1]).write_text(report.model_dump_json())
        return 0


def test_it_deploys_each_app_once_then_runs_every_case_and_prices_the_gpu_seconds(tmp_path):
    fake = FakeModal()
    ticks = iter(range(0, 10_000, 7))
    rows = gpu_smoke.smoke(gpu_smoke.CASES, tmp_path, runner=fake, clock=lambda: float(next(ticks)))

    deploys = [c for c in fake.commands if c[1] == "deploy"]
    assert deploys == [
        ["modal", "deploy", "-m", f"modal_workers.{app}"] for app in ("voice", "avatar", "video")
    ]
    runs = [c for c in fake.commands if c[1] == "run"]
    assert [c[c.index("--model") + 1] for c in runs] == [c.model for c in gpu_smoke.CASES]

    multitalk = [r for r in rows if r.case == "multitalk"]
    price = MODAL_GPU_USD_PER_S["H100"]
    cold, warm = multitalk
    assert cold.cold_start_s == pytest.approx(300 - 200 - 60) and cold.load_s == 200
    assert cold.cost_usd == pytest.approx(300 * price)  # a cold call pays start + load + render
    assert warm.cold_start_s is None and warm.cost_usd == pytest.approx(110 * price)
    assert warm.usd_per_output_min == pytest.approx(110 / 6 * 60 * price)
    voice = [r for r in rows if r.case == "chatterbox"]
    assert voice[0].ok and voice[0].wall_s == 7 and voice[0].cost_usd is None
    assert all(r.ok for r in rows)


def test_a_failed_case_is_a_failed_row_and_the_table_says_so(tmp_path):
    cases = [gpu_smoke.Case("avatar", "infinitetalk"), gpu_smoke.Case("video", "ltx-video")]
    rows = gpu_smoke.smoke(cases, tmp_path, deploy=False, runner=FakeModal(fail={"infinitetalk"}))
    assert (rows[0].case, rows[0].ok, rows[0].note) == ("infinitetalk", False, "exit 1")
    text = gpu_smoke.table(rows)
    assert text.splitlines()[0].startswith("| case | clip |")
    assert "| infinitetalk | — | FAIL |" in text
    assert "| ltx-video | 3 s | ok | 75 | 40 | 200 | 60.0 | 300.0 |" in text


def test_an_old_report_is_never_read_again(tmp_path):
    case = gpu_smoke.Case("video", "wan2.2-ti2v-5b")
    gpu_smoke.report_path(case, tmp_path).write_text("stale")
    rows = gpu_smoke.smoke([case], tmp_path, deploy=False, runner=lambda command: 0)
    assert [(r.ok, r.note) for r in rows] == [(False, "no report")]


def test_selection_and_turbo_cases():
    assert [c.model for c in gpu_smoke.select("avatar")] == ["multitalk", "infinitetalk"]
    assert [c.model for c in gpu_smoke.select("ltx-video,chatterbox")] == ["chatterbox", "ltx-video"]
    with pytest.raises(SystemExit):
        gpu_smoke.select("sora")
    assert gpu_smoke.Case("avatar", "multitalk", turbo=True).slug == "multitalk-turbo"


@pytest.mark.parametrize("case", [*gpu_smoke.CASES, gpu_smoke.Case("avatar", "multitalk", turbo=True)])
def test_each_command_line_parses_against_the_real_entrypoint_with_modals_cli(case, tmp_path, monkeypatch):
    from modal.cli.run import _get_click_command_for_local_entrypoint

    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    command = gpu_smoke.case_command(case, tmp_path)
    assert command[:4] == ["modal", "run", "-m", f"modal_workers.{case.app}"]
    module = importlib.import_module(command[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entrypoints = module.app.registered_entrypoints
    assert len(entrypoints) == 1  # `modal run -m module` needs exactly one to pick it without a name
    click_command = _get_click_command_for_local_entrypoint(module.app, next(iter(entrypoints.values())))
    params = click_command.make_context("modal run", command[4:]).params
    assert params["model"] == case.model
    if case.app == "avatar":
        assert Path(params["image"]).is_file() and Path(params["audio"]).is_file()
        assert params["turbo"] is case.turbo
    if case.app != "voice":
        assert params["report"] == str(gpu_smoke.report_path(case, tmp_path))
