"""What the pipeline does with the avatar quality reports its workers measure (the measuring itself
is the worker's: talkstack.media.quality).

- A parallel long avatar's chunk whose report fails is rendered once more before stitching
  (`QualityThresholds.rerender_chunks`); the second render is used whatever its score, with a
  warning on the job. complete.py decides, through `needs_rerender`.
- The job's report: the main step's, or for a stitched video whose stitch step measured nothing,
  the chunks' combined by `combine`: the worst value of each measure, passed only if all passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from talkstack.contract.quality import QualityCheck, QualityCheckName, QualityReport
from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.settings.quality import QualityThresholds

RERENDER_ERROR = "Quality.Rerender"
"""The task failure complete sends for a chunk to render again: the AvatarChunk state's Retry
(aws/stepfunctions/job.asl.json) retries it once, as a new attempt of the same chunk."""


RERENDER_CHECKS: frozenset[QualityCheckName] = frozenset({"lipsync", "identity"})
"""The checks a second render (with another seed) can change. Frames and A/V sync follow from the
audio slice and the encoder, and the stitch step colour-matches every chunk to the photo: failing
only those, a chunk would be rendered again for nothing."""


def failed_checks(report: QualityReport) -> str:
    """`lipsync 0.12 (pass mark 0.3), colour 9.1 (pass mark 6)`: the checks that failed, for warnings."""
    failed = [c for c in report.checks if c.passed is False]
    if not failed:
        return "no check failed by name"
    return ", ".join(
        f"{c.name} {'-' if c.value is None else f'{c.value:.3g}'} (pass mark {c.threshold:g})" for c in failed
    )


def needs_rerender(
    address: StepAddress, marker: ResultMarker, sent_back: bool, thresholds: QualityThresholds
) -> bool:
    """Whether this chunk result is to be rendered again rather than stitched: a chunk whose
    report fails, unless the setting is off or the chunk was `sent_back` once already (then this
    is its second render, used whatever its score: a chunk is rendered at most twice for quality)."""
    return (
        address.chunk is not None
        and thresholds.rerender_chunks
        and not sent_back
        and marker.quality is not None
        and any(c.passed is False and c.name in RERENDER_CHECKS for c in marker.quality.checks)
    )


def rerender_warning(address: StepAddress, first: ResultMarker, second: ResultMarker) -> str:
    """What the job says about a chunk it rendered twice, and which render it used."""
    assert first.quality is not None  # only a measured, failing render is turned down
    head = (
        f"chunk {address.chunk} was rendered again: its first render failed the quality checks "
        f"({failed_checks(first.quality)})"
    )
    if second.quality is None:
        return f"{head}; the second render was not measured and was used"
    if second.quality.passed:
        return f"{head}; the second render passed and was used"
    return f"{head}; the second failed too ({failed_checks(second.quality)}) and was stitched anyway"


# --- the job's report -----------------------------------------------------------------------------

# How to tell the worse of two values of a measure (the report's fields and QualityThresholds:
# lip sync has a floor, every other measure a ceiling, A/V offset in either direction).
_WORSE: dict[QualityCheckName, Callable[[float], float]] = {
    "lipsync": lambda value: -value,
    "identity": lambda value: value,
    "colour": lambda value: value,
    "frames": abs,
    "av_sync": abs,
}
_STATUS_RANK = {False: 0, True: 1, None: 2}  # failed before passed before not measured


def _worst_check(name: QualityCheckName, checks: Sequence[tuple[int, QualityCheck]]) -> QualityCheck:
    def badness(item: tuple[int, QualityCheck]) -> tuple[int, float]:
        check = item[1]
        value = float("-inf") if check.value is None else _WORSE[name](check.value)
        return _STATUS_RANK[check.passed], -value

    index, check = min(checks, key=badness)
    detail = f"chunk {index}" + (f": {check.detail}" if check.detail else "")
    return check.model_copy(update={"detail": detail})


def _extreme(values: Sequence[float | None], worse: Callable[[float], float]) -> float | None:
    measured = [v for v in values if v is not None]
    return max(measured, key=worse) if measured else None


def combine(reports: Mapping[int, QualityReport]) -> QualityReport:
    """One report for chunks rendered apart and stitched, from each chunk's report by chunk index:
    the worst value of each measure (the lowest lip sync, the largest drifts and A/V offset, the
    smallest share of faces found), frames, sampled frames and seconds summed (overlaps count
    twice), each check the worst of that check across the chunks (its detail names the chunk), and
    passed only if every chunk passed."""
    if not reports:
        raise ValueError("combine: no reports")
    if len(reports) == 1:
        return next(iter(reports.values()))
    ordered = [reports[index] for index in sorted(reports)]
    lipsync = _extreme([r.lipsync for r in ordered], _WORSE["lipsync"])
    lag = next((r.lipsync_lag_s for r in ordered if lipsync is not None and r.lipsync == lipsync), None)
    by_name: dict[QualityCheckName, list[tuple[int, QualityCheck]]] = {}
    for index in sorted(reports):
        for check in reports[index].checks:
            by_name.setdefault(check.name, []).append((index, check))
    return QualityReport(
        lipsync=lipsync,
        lipsync_lag_s=lag,
        identity_drift=_extreme([r.identity_drift for r in ordered], _WORSE["identity"]),
        colour_drift=_extreme([r.colour_drift for r in ordered], _WORSE["colour"]),
        frames=sum(r.frames for r in ordered),
        expected_frames=sum(r.expected_frames for r in ordered),
        av_offset_s=max((r.av_offset_s for r in ordered), key=abs),
        faces_found=min(r.faces_found for r in ordered),
        sampled_frames=sum(r.sampled_frames for r in ordered),
        seconds=round(sum(r.seconds for r in ordered), 3),
        checks=[_worst_check(name, checks) for name, checks in by_name.items()],
        passed=all(r.passed for r in ordered),
    )


def job_quality(main: ResultMarker, chunks: Mapping[int, ResultMarker]) -> QualityReport | None:
    """The job's report: the main step's (a stitch step that measured the joined video), else the
    combined report of the chunks it joined (by chunk index), else None (nothing was measured)."""
    if main.quality is not None:
        return main.quality
    measured = {index: c.quality for index, c in chunks.items() if c.quality is not None}
    return combine(measured) if measured else None
