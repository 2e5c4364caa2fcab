"""Section 6 (``--only s3``): a mirror into an S3 bucket against the same mirror to local disk.

Both runs fetch the same images from the same simulator (warm render cache, 50 ms latency),
one into a directory, one into a bucket of moto's S3 server on 127.0.0.1 (``--out
s3://bench/...``, the manifest a SQLite file beside). Rounds alternate which goes first; the
fastest of ``repeat`` is kept for each. moto is a Python server sharing the machine's cores:
its own CPU is the bucket's cost here, where a real object store would add network latency.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import mirror
from bench.options import Options
from bench.procs import BenchError
from bench.report import Row
from bench.throughput import REALISTIC_LATENCY, prepared

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "bench"


@contextmanager
def moto_server(logs: Path) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1; its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    logs.parent.mkdir(parents=True, exist_ok=True)
    with logs.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"moto_server did not start; see {logs}") from exc
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def create_bucket(endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip
    client.create_bucket(Bucket=BUCKET)


def run(options: Options, work: Path) -> tuple[list[Row], list[str]]:
    images, scale = options.s3_images, options.image_scale
    with (
        prepared(options, work, "s3", images, scale) as setup,
        moto_server(work / "logs" / "moto") as endpoint,
    ):
        create_bucket(endpoint)
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        bench, n = setup.bench, len(setup.items)
        bench.sim.set_latency(REALISTIC_LATENCY)
        disk: list[mirror.MirrorRun] = []
        bucket: list[mirror.MirrorRun] = []
        for round_ in range(options.repeat):
            for target in ("disk", "s3") if round_ % 2 == 0 else ("s3", "disk"):
                label = f"s3-{target}-{round_}"
                out, logs = work / "runs" / label, work / "logs" / label
                if target == "disk":
                    disk.append(_mirror(options, bench.sim.base_url, out, setup.data_sets, logs))
                    continue
                extra = ["--manifest", f"sqlite:///{out}/manifest.sqlite"]
                url = f"s3://{BUCKET}/{label}"
                bucket.append(
                    _mirror(options, bench.sim.base_url, url, setup.data_sets, logs, extra, env)
                )
        for run_ in disk + bucket:
            if run_.summary.get("done") != n or run_.summary.get("failed"):
                raise BenchError(f"a mirror fetched {run_.summary.get('done')}/{n}")
    best_disk = min(disk, key=lambda r: r.seconds)
    best_bucket = min(bucket, key=lambda r: r.seconds)
    latency, concurrency = REALISTIC_LATENCY, options.concurrency
    case = f"{n:,} images of ~{setup.mean_kb:.1f} kB, {latency:g} ms, C={concurrency}"
    rows = [
        Row("s3", case, "mirror to local disk, images/s", n / best_disk.seconds, "/s"),
        Row("s3", case, "mirror into the bucket (moto), images/s", n / best_bucket.seconds, "/s"),
        Row("s3", case, "bucket / disk, wall", best_bucket.seconds / best_disk.seconds, "x"),
        Row(
            "s3",
            case,
            "mirror to local disk, CPU per 1,000 images",
            best_disk.measured.cpu * 1000 / n,
            "s",
        ),
        Row(
            "s3",
            case,
            "mirror into the bucket, CPU per 1,000 images (client only)",
            best_bucket.measured.cpu * 1000 / n,
            "s",
        ),
        Row("s3", case, "mirror into the bucket, peak RSS", best_bucket.measured.maxrss_mb, "MB"),
    ]
    notes = [
        f"s3: the same {n:,} images from one simulator into a directory and into a bucket of "
        "moto's S3 server on 127.0.0.1 (one PUT per image); the best "
        f"of {options.repeat} rounds each. moto's own CPU competes with the mirror for the cores."
    ]
    return rows, notes


def _mirror(
    options: Options,
    base: str,
    out: Path | str,
    data_sets: list[int],
    logs: Path,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> mirror.MirrorRun:
    return mirror.run_mirror(
        base,
        out,
        data_sets,
        concurrency=options.concurrency,
        logs=logs,
        timeout=options.step_timeout,
        extra=extra or (),
        env={**os.environ, **(env or {})},
    )
