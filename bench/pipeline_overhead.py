"""Benchmark: how much time the event-driven pipeline adds around the engine, on the local stack.

Runs --jobs avatar jobs through `talkstack.local.stack.LocalStack` (moto server, the real Lambda
handlers in process, local worker processes), first one at a time, then --concurrency at once
(manifests PUT together from a thread pool, then waited for). The clip is kept tiny (1.5 s of the
bundled speech, the portrait's face crop at 256 px) so the figures are about orchestration, not rendering.

Figures, per job, then p50 / p95 over the jobs of a mode:

  manifest landed → worker started   the worker's ResultMarker.started_at minus the moment just before
                                     the manifest PUT (ingest, validate, plan, dispatch, queueing for
                                     a free worker process)
  worker done → webhook delivered    the webhook receiver's arrival time of job.completed minus the
                                     worker's ResultMarker.at (complete, finalize, notify, delivery)
  orchestration overhead             (webhook delivered − manifest landed) − ResultMarker.engine_s:
                                     everything in the job's wall time that is not the engine
  engine time                        ResultMarker.engine_s, for reference

Each p50 hop is compared with a 250 ms target ("ok" / "over"). With more jobs than free worker
processes, "landed → started" includes queueing for a worker, which is load, not orchestration.

Correctness, per mode: a job is lost if its execution did not end SUCCEEDED or no job.completed
webhook was accepted; duplicated if more than one job.completed delivery was accepted or more than
one video was published for it. Exit status 1 if any job was lost or duplicated.

The first --warmup jobs (not counted) pay for the handlers' imports and the worker processes'
start. Not a test: machines are shared and timings are noisy; the p50s are the figures to read.

    python bench/pipeline_overhead.py [--jobs 8] [--concurrency 8] [--workers 8] [--port 4597]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.local.receiver import WebhookReceiver
from talkstack.local.resources import LOCAL_WEBHOOK_SECRET, LocalResources
from talkstack.local.stack import LocalStack
from talkstack.media.audio import read_audio, write_wav
from talkstack.pipeline.store import JobStore

TARGET_MS = 250.0
CLIP_SECONDS = 1.5
PORTRAIT_PX = 256
PORTRAIT_CROP = (64, 0, 448, 384)
"""Top-centre 384 px square of the bundled 512 px portrait (its face box is about x 181-270, y 72-177)."""
JOB_TIMEOUT_S = 300.0
SETTLE_S = 2.0
"""Wait this long after the last job before counting deliveries, so a late duplicate is seen."""


@dataclass(frozen=True)
class Clip:
    image: Path
    audio: Path


@dataclass
class JobSample:
    job_id: str
    landed_at: float
    """time.time() just before the manifest PUT (which runs ingest synchronously)."""
    status: str = "UNKNOWN"
    started_at: float | None = None
    worker_done_at: float | None = None
    engine_s: float | None = None
    delivered_at: float | None = None
    completed_deliveries: int = 0
    output_videos: int = 0
    problem: str | None = None

    @property
    def lost(self) -> bool:
        return self.status != "SUCCEEDED" or self.delivered_at is None

    @property
    def duplicated(self) -> bool:
        return self.completed_deliveries > 1 or self.output_videos > 1

    def figures_ms(self) -> dict[str, float] | None:
        if self.lost or None in (self.started_at, self.worker_done_at, self.engine_s):
            return None
        assert self.started_at and self.worker_done_at and self.delivered_at and self.engine_s is not None
        return {
            "landed_to_started": (self.started_at - self.landed_at) * 1000,
            "done_to_delivered": (self.delivered_at - self.worker_done_at) * 1000,
            "overhead": (self.delivered_at - self.landed_at - self.engine_s) * 1000,
            "engine": self.engine_s * 1000,
        }


@dataclass(frozen=True)
class ModeResult:
    mode: str
    samples: list[JobSample]

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.samples)

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.samples)


# --- inputs ---------------------------------------------------------------------------------------


def make_clip(folder: Path) -> Clip:
    """The first CLIP_SECONDS of the bundled speech, and the portrait cropped to PORTRAIT_CROP (the
    face stays whole) and downscaled to PORTRAIT_PX: a plain 512 → 256 px downscale leaves the face
    45 px wide, under the engine's 48 px minimum (FACE_TOO_SMALL)."""
    samples_dir = Path(str(resources.files("talkstack") / "assets" / "samples"))
    speech = read_audio(samples_dir / "speech.wav")
    audio = write_wav(
        folder / "speech.wav", speech.samples[: int(CLIP_SECONDS * speech.sample_rate)], speech.sample_rate
    )
    with Image.open(samples_dir / "portrait.png") as portrait:
        small = portrait.convert("RGB").crop(PORTRAIT_CROP)
    small = small.resize((PORTRAIT_PX, PORTRAIT_PX), Image.Resampling.LANCZOS)
    image = folder / "portrait.png"
    small.save(image)
    return Clip(image, audio)


# --- one job --------------------------------------------------------------------------------------


def new_job_id(mode: str, index: int) -> str:
    return f"bench-{mode}-{index:03d}-{uuid.uuid4().hex[:8]}"


def upload_inputs(stack: LocalStack, clip: Clip, job_id: str) -> None:
    bucket = stack.resources.input_bucket
    stack.s3.upload_file(str(clip.image), bucket, f"inputs/{job_id}/portrait.png")
    stack.s3.upload_file(str(clip.audio), bucket, f"inputs/{job_id}/speech.wav")


def put_manifest(stack: LocalStack, hooks: WebhookReceiver, job_id: str) -> JobSample:
    manifest = {
        "job_id": job_id,
        "task": "avatar",
        "inputs": {"image": "portrait.png", "audio": "speech.wav"},
        "notify": {"webhook_url": hooks.url, "events": ["job.completed", "job.failed"]},
        # A crop of the bundled portrait is no longer the bundled file, so it needs an attestation
        # like any user's photo (docs/safety.md); the photograph is NASA's, in the public domain.
        "consent": {
            "attested_by": "talkstack bench",
            "attested_at": datetime.now(UTC).isoformat(),
            "subject": "Eileen Collins (NASA photograph, public domain)",
            "scope": "likeness",
            "statement": "Public-domain photograph bundled with talkstack (NOTICE), cropped for the bench.",
        },
    }
    landed_at = time.time()
    stack.s3.put_object(
        Bucket=stack.resources.input_bucket, Key=f"inputs/{job_id}/job.json", Body=json.dumps(manifest)
    )
    return JobSample(job_id, landed_at)


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 1.0)


def await_job(stack: LocalStack, hooks: WebhookReceiver, sample: JobSample, deadline: float) -> None:
    """Fill in `sample` from the execution, the webhook and the avatar step's result marker."""
    try:
        described = stack.wait_for_execution(sample.job_id, timeout_s=_left(deadline))
        sample.status = described["status"]
        if sample.status != "SUCCEEDED":
            sample.problem = f"execution ended {sample.status}"
            return
        delivery = hooks.wait_for(sample.job_id, "job.completed", timeout_s=_left(deadline))
        sample.delivered_at = delivery.received_at
    except TimeoutError as exc:
        sample.problem = str(exc)
        return
    avatar = StepAddress(step="avatar")
    step = JobStore(stack.resources.jobs_table).get_step_result(sample.job_id, avatar, ResultMarker)
    if step is None:
        sample.problem = "no STEP#avatar result in the jobs table"
        return
    sample.started_at = step.started_at.timestamp()
    sample.worker_done_at = step.at.timestamp()
    sample.engine_s = step.engine_s


def count_duplicates(stack: LocalStack, hooks: WebhookReceiver, samples: list[JobSample]) -> None:
    """Accepted job.completed deliveries and published videos per job (after SETTLE_S)."""
    time.sleep(SETTLE_S)
    for sample in samples:
        accepted = hooks.received(sample.job_id, "job.completed")
        sample.completed_deliveries = sum(d.status < 300 for d in accepted)
        listed = stack.s3.list_objects_v2(Bucket=stack.resources.output_bucket, Prefix=f"{sample.job_id}/")
        sample.output_videos = sum(o["Key"].endswith(".mp4") for o in listed.get("Contents", []))


# --- modes ----------------------------------------------------------------------------------------


def run_sequential(stack: LocalStack, hooks: WebhookReceiver, clip: Clip, jobs: int, mode: str) -> ModeResult:
    samples = []
    for index in range(jobs):
        job_id = new_job_id(mode, index)
        upload_inputs(stack, clip, job_id)
        sample = put_manifest(stack, hooks, job_id)
        await_job(stack, hooks, sample, time.monotonic() + JOB_TIMEOUT_S)
        samples.append(sample)
    count_duplicates(stack, hooks, samples)
    return ModeResult(mode, samples)


def run_concurrent(
    stack: LocalStack, hooks: WebhookReceiver, clip: Clip, jobs: int, concurrency: int
) -> ModeResult:
    job_ids = [new_job_id("concurrent", index) for index in range(jobs)]
    for job_id in job_ids:
        upload_inputs(stack, clip, job_id)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        samples = list(pool.map(lambda job_id: put_manifest(stack, hooks, job_id), job_ids))
    deadline = time.monotonic() + JOB_TIMEOUT_S * max(1, jobs // concurrency)
    for sample in samples:
        await_job(stack, hooks, sample, deadline)
    count_duplicates(stack, hooks, samples)
    return ModeResult("concurrent", samples)


# --- report ---------------------------------------------------------------------------------------

FIGURES: list[tuple[str, str, bool]] = [
    ("landed_to_started", "manifest landed → worker started", True),
    ("done_to_delivered", "worker done → webhook delivered", True),
    ("overhead", "orchestration overhead", True),
    ("engine", "engine time (reference)", False),
]


def percentiles(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def print_table(results: list[ModeResult]) -> None:
    header = f"{'mode':<12} {'figure':<34} {'jobs':>5} {'p50 ms':>9} {'p95 ms':>9} {'target':>8}"
    print(header)
    print("-" * len(header))
    for result in results:
        figures = [f for s in result.samples if (f := s.figures_ms()) is not None]
        for key, label, targeted in FIGURES:
            stats = percentiles([f[key] for f in figures])
            if stats is None:
                print(f"{result.mode:<12} {label:<34} {0:>5} {'n/a':>9} {'n/a':>9} {'n/a':>8}")
                continue
            p50, p95 = stats
            verdict = ("ok" if p50 <= TARGET_MS else "over") if targeted else "—"
            p95_text = f"{p95:>9.0f}" if targeted else f"{'':>9}"
            print(f"{result.mode:<12} {label:<34} {len(figures):>5} {p50:>9.0f} {p95_text} {verdict:>8}")
    print()
    for result in results:
        verdict = "ok" if result.lost == 0 and result.duplicated == 0 else "FAIL"
        print(
            f"correctness {result.mode:<12} {len(result.samples)} jobs: lost {result.lost}, "
            f"duplicated {result.duplicated} ({verdict})"
        )
        for sample in result.samples:
            if sample.lost or sample.duplicated:
                print(
                    f"  {sample.job_id}: status {sample.status}, accepted job.completed "
                    f"{sample.completed_deliveries}, videos {sample.output_videos}"
                    + (f", {sample.problem}" if sample.problem else "")
                )


def print_machine(args: argparse.Namespace) -> None:
    print(
        f"pipeline overhead benchmark — {platform.platform()}, {platform.machine()}, "
        f"os.cpu_count()={os.cpu_count()}, Python {platform.python_version()}"
    )
    print(
        f"{args.jobs} jobs per mode (+{args.warmup} warm-up), concurrency {args.concurrency}, "
        f"{args.workers} local workers, heartbeat {args.heartbeat} s, "
        f"clip {CLIP_SECONDS:g} s speech / {PORTRAIT_PX} px portrait crop, "
        f"target {TARGET_MS:.0f} ms per p50 hop"
    )
    print("note: medians (p50) and p95 on a shared machine; timings are noisy, read the p50s.\n")


# --- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs per mode (default 8)")
    parser.add_argument("--concurrency", type=int, default=8, help="manifests PUT at once (default 8)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: concurrency)")
    parser.add_argument("--port", type=int, default=4597, help="moto server port (default 4597)")
    parser.add_argument("--heartbeat", type=int, default=10, help="worker heartbeat seconds (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted jobs first (default 1)")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = args.concurrency
    return args


def main() -> int:
    args = parse_args()
    print_machine(args)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    settings = {"heartbeat_seconds": str(args.heartbeat)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        WebhookReceiver(LOCAL_WEBHOOK_SECRET) as hooks,
        LocalStack(LocalResources(port=args.port), workers=args.workers, settings=settings) as stack,
    ):
        clip = make_clip(Path(tmp))
        warmup = run_sequential(stack, hooks, clip, args.warmup, "warmup") if args.warmup else None
        results = [
            run_sequential(stack, hooks, clip, args.jobs, "sequential"),
            run_concurrent(stack, hooks, clip, args.jobs, args.concurrency),
        ]
    print_table(results)
    if warmup is not None and (warmup.lost or warmup.duplicated):
        print(f"warm-up: lost {warmup.lost}, duplicated {warmup.duplicated}")
    counted = [*results, warmup] if warmup is not None else results
    return 1 if any(r.lost or r.duplicated for r in counted) else 0


if __name__ == "__main__":  # required: the worker pool spawns processes that re-import this module
    sys.exit(main())
