"""The avatar quality report as `talkstack status` and `talkstack api status` print it: one line for
the verdict, then a compact table of the checks (value, pass mark, pass/fail)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from talkstack.cli.common import out
from talkstack.contract.quality import QualityCheck, QualityReport

# Lip sync has a floor; every other check a ceiling (talkstack.settings.quality.QualityThresholds).
_FLOOR = frozenset({"lipsync"})
_VERDICT = {True: "[green]pass[/]", False: "[bold red]FAIL[/]", None: "[dim]not measured[/]"}


def _pass_mark(check: QualityCheck) -> str:
    return f"{'≥' if check.name in _FLOOR else '≤'} {check.threshold:g}"


def quality_table(report: QualityReport) -> Table:
    table = Table("check", "value", "pass mark", "result", "detail", box=box.SIMPLE, padding=(0, 1))
    for check in report.checks:
        value = "-" if check.value is None else f"{check.value:.3g}"
        table.add_row(check.name, value, _pass_mark(check), _VERDICT[check.passed], check.detail or "")
    return table


def print_quality(report: QualityReport | None) -> None:
    """The report of a completed avatar job (nothing for a job without one)."""
    if report is None:
        return
    faces = f"face in {report.faces_found:.0%} of {report.sampled_frames} sampled frames"
    verdict = "[green]passed[/]" if report.passed else "[bold red]failed[/]"
    out.print(f"  quality   {verdict}  ({faces}; {report.frames}/{report.expected_frames} frames)")
    out.print(quality_table(report))
