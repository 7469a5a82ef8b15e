"""The job's quality report for a stitched avatar (talkstack.pipeline.quality): the stitch step's
when it measured the joined video, else the chunks' combined (the worst value of each measure,
passed only if every chunk passed). The reports are built here; the worker measures them."""

from __future__ import annotations

from talkstack.contract.quality import QualityCheck
from talkstack.pipeline.quality import combine, failed_checks, job_quality
from tests.support.fakes import FakeS3
from tests.support.steps import WORK, quality_report, worker_result


def test_one_report_is_its_own_combination():
    report = quality_report()
    assert combine({3: report}) is report


def test_the_combination_is_the_worst_of_each_measure():
    no_face = quality_report(
        lipsync=0.0,
        lipsync_lag_s=None,
        identity_drift=None,
        faces_found=0.2,
        checks=[QualityCheck(name="lipsync", value=None, threshold=0.3, passed=None, detail="no face")],
        passed=True,  # an unmeasured check never fails a job
    )
    no_face = no_face.model_copy(update={"lipsync": None})
    late = quality_report(lipsync=0.35, lipsync_lag_s=0.12, av_offset_s=-0.06, identity_drift=0.2)
    drifting = quality_report(lipsync=0.5, colour_drift=8.0, av_offset_s=0.02)

    combined = combine({0: no_face, 1: late, 2: drifting})

    assert combined.lipsync == 0.35 and combined.lipsync_lag_s == 0.12  # the lag of that score
    assert combined.identity_drift == 0.2 and combined.colour_drift == 8.0
    assert combined.av_offset_s == -0.06  # the largest offset, its sign kept
    assert combined.faces_found == 0.2
    assert (combined.frames, combined.expected_frames, combined.sampled_frames) == (150, 150, 75)
    assert combined.seconds == 1.2
    assert combined.passed is False  # the drifting chunk failed
    checks = {c.name: c for c in combined.checks}
    # each check is the worst chunk's, and says which chunk: a measured one before an unmeasured one
    assert (checks["lipsync"].value, checks["lipsync"].passed, checks["lipsync"].detail) == (
        0.35,
        True,
        "chunk 1",
    )
    assert (checks["colour"].value, checks["colour"].passed, checks["colour"].detail) == (
        8.0,
        False,
        "chunk 2",
    )
    assert failed_checks(combined) == "colour 8 (pass mark 6)"


def test_all_chunks_passing_pass():
    assert combine({0: quality_report(), 1: quality_report(lipsync=0.9)}).passed


def test_the_job_takes_the_stitch_steps_report_else_its_chunks():
    s3 = FakeS3([WORK])
    stitched = quality_report(lipsync=0.8)
    chunks = {
        0: worker_result(s3, "job-1", "avatar-c0-1-x", quality=None),  # an engine that measured nothing
        1: worker_result(s3, "job-1", "avatar-c1-1-x", quality=quality_report(lipsync=0.1)),
        2: worker_result(s3, "job-1", "avatar-c2-1-x", quality=quality_report(lipsync=0.5)),
    }

    assert job_quality(worker_result(s3, "job-1", "stitch-1-x", quality=stitched), chunks) == stitched
    combined = job_quality(worker_result(s3, "job-1", "stitch-1-x"), chunks)
    assert combined is not None and combined.lipsync == 0.1
    assert {c.name: c.detail for c in combined.checks}["lipsync"] == "chunk 1"  # the chunk's own index
    unmeasured = {0: chunks[0]}
    assert job_quality(worker_result(s3, "job-1", "stitch-1-x"), unmeasured) is None
