"""Section 5: ``allen-mirror export`` to WebDataset against ``tar cf`` over the same files.

A mirror of N small JPEGs (~1 kB, the section kind at tier 4, spread over data sets of 140
images) is written directly, with a real manifest (planned and recorded through the manifest's
own API) and real ``dataset.json`` files, so the export reads what a mirror holds. Both
contestants run as processes from a warm page cache; the least of ``repeat`` rounds is kept.
The export also hashes every file and writes the index and the JSON members, which tar does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
from PIL import Image

from bench.options import Options
from bench.procs import BenchError
from bench.report import Row

REPO = Path(__file__).resolve().parent.parent  # where ``-m bench.minimal_export`` is found
LIMIT = 2.0  # the target: at most twice tar cf
PER_DATA_SET = 140


def _jpeg(seed: int) -> bytes:
    """A distinct ~1 kB JPEG."""
    image = Image.new("RGB", (48, 32), ((seed * 37) % 256, (seed * 11) % 256, seed % 256))
    image.putpixel((seed % 48, seed % 32), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_mirror(out: Path, images: int) -> list[str]:
    """Files, ``dataset.json`` and a manifest with every item done; returns the file paths."""
    from crawler.manifest import Status, open_manifest
    from crawler.manifest.repository import Outcome
    from crawler.plan import Item

    out.mkdir(parents=True)
    planned: list[tuple[Item, bytes]] = []
    records: dict[int, list[dict[str, object]]] = {}
    for n in range(images):
        data_set, number = 100 + n // PER_DATA_SET, 1 + n % PER_DATA_SET
        image_id = 1_000_000 + n
        path = f"{data_set}/section/ds4/{number:04d}_{image_id}.jpg"
        ref = f"/api/v2/section_image_download/{image_id}?downsample=4"
        planned.append((Item(ref, path, "section", data_set, image_id), _jpeg(n)))
        records.setdefault(data_set, []).append(
            {
                "id": image_id,
                "data_set_id": data_set,
                "section_number": number,
                "width": 768,
                "height": 512,
                "resolution": 1.0,
            }
        )
    for data_set, rows in records.items():
        (out / str(data_set)).mkdir()
        record = {"id": data_set, "section_thickness": 100.0, "products": [{"id": 5}]}
        document = {"data_set": record, "labels": {}, "section_images": rows}
        (out / str(data_set) / "dataset.json").write_text(json.dumps(document))
    for item, data in planned:
        target = out / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    async def record() -> None:
        manifest = await open_manifest(f"sqlite:///{out / 'manifest.sqlite'}")
        try:
            await manifest.add_items([item for item, _ in planned], "http://bench")
            ids = {row["path"]: row["id"] async for row in manifest.rows(Status.PENDING.value)}
            outcomes = [
                Outcome(
                    ids[item.path],
                    Status.DONE,
                    "http://bench" + item.ref,
                    1,
                    200,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                )
                for item, data in planned
            ]
            await manifest.record(outcomes)
        finally:
            await manifest.close()

    anyio.run(record)
    return [item.path for item, _ in planned]


def _timed(command: list[str], cwd: Path, timeout: float) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchError(f"{command[:3]} failed: {completed.stderr.decode()[-500:]}")
    return elapsed


def run(options: Options, work: Path) -> tuple[list[Row], list[str]]:
    images = options.export_images
    out = work / "export-mirror"
    if out.exists():
        shutil.rmtree(out)
    paths = build_mirror(out, images)
    listing = work / "export-files.txt"
    listing.write_text("\n".join(paths) + "\n")
    export_command = [
        sys.executable, "-m", "crawler", "export", "--out", str(out), "--to",
        str(work / "export-wds"), "--val-fraction", "0", "--no-progress",
    ]  # fmt: skip
    tar_command = ["tar", "cf", str(work / "export.tar"), "-C", str(out), "-T", str(listing)]
    floor_command = [
        sys.executable, "-m", "bench.minimal_export", "--root", str(out), "--files",
        str(listing), "--to", str(work / "export-minimal.tar"),
    ]  # fmt: skip
    _timed(tar_command, work, options.step_timeout)  # warm the page cache
    tar = min(_timed(tar_command, work, options.step_timeout) for _ in range(options.repeat))
    floor = min(_timed(floor_command, REPO, options.step_timeout) for _ in range(options.repeat))
    ours = min(_timed(export_command, work, options.step_timeout) for _ in range(options.repeat))
    case = f"{images:,} JPEGs of ~1 kB"
    rows = [
        Row("export", case, "tar cf, process wall", tar, "s"),
        Row(
            "export", case, "minimal Python loop (read, sha256, tarfile), process wall", floor, "s"
        ),
        Row("export", case, "allen-mirror export --format webdataset, process wall", ours, "s"),
        Row("export", case, "minimal Python loop / tar cf", floor / tar, "x"),
        Row("export", case, "export / tar cf", ours / tar, "x", LIMIT),
        Row("export", case, "export / minimal Python loop", ours / floor, "x"),
    ]
    notes = [
        "export: the minimal Python loop (bench/minimal_export.py) does the per-file work in "
        "the plainest Python (read, sha256, a JSON member, tarfile headers) and shows what "
        "Python itself costs next to tar; the export also reads the manifest and each "
        "dataset.json, and writes index.parquet; all include process start-up."
    ]
    return rows, notes
