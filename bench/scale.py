"""Section 3: a manifest of ~1,000,000 tile items: planning it, resuming over it, `status`.

With `plan --tile` available the real command plans full-resolution 256-pixel tiles of a
full-scale synthetic catalogue; until then `bench.synthetic` inserts the same kind of items
through `Manifest.add_items`. Either way the manifest's refs point at real simulator images, so
the resumed mirror's first requests are ordinary tile downloads the server answers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench import mirror
from bench.options import Options
from bench.procs import PYTHON, BenchError, FirstRequest, SimulatorProcess, crawler, run_measured
from bench.report import Row
from bench.selection import scale_catalogue_shape, tile_count

TILE = 256
PLAN_SECONDS, PLAN_RSS_MB, FIRST_REQUEST_S, STATUS_S = 60.0, 500.0, 5.0, 2.0
FIRST_REQUEST_WAIT = 120.0  # give up waiting for the resumed run's first request after this
_PLANNED = re.compile(r"planned .*?(\d+) item\(s\)")


def _pick_images(sim: SimulatorProcess, items: int) -> tuple[list[int], list[dict[str, Any]]]:
    """Data sets (and their images) in id order until their tiles reach ``items``."""
    data_sets: list[int] = []
    images: list[dict[str, Any]] = []
    tiles = 0
    for data_set in sim.ask("datasets")["datasets"]:
        if data_set["failed"]:
            continue
        found = sim.ask(f"images {data_set['id']}")["images"]
        data_sets.append(int(data_set["id"]))
        images += found
        tiles += sum(tile_count(int(i["width"]), int(i["height"]), TILE) for i in found)
        if tiles >= items:
            return data_sets, images
    raise BenchError(f"the catalogue holds only {tiles} tiles, fewer than {items}")


def _plan_real(
    sim: SimulatorProcess, out: Path, data_sets: list[int], logs: Path, timeout: float
) -> tuple[Any, int]:
    measured = mirror.plan(
        sim.base_url,
        out,
        data_sets,
        logs=logs,
        timeout=timeout,
        extra=["--tile", str(TILE), "--downsample", "0"],
    )
    found = _PLANNED.search(measured.stdout)
    if found is None:
        raise BenchError(f"cannot read the item count from plan's output: {measured.stdout!r}")
    return measured, int(found.group(1))


def _plan_synthetic(
    sim: SimulatorProcess,
    out: Path,
    images: list[dict[str, Any]],
    items: int,
    work: Path,
    logs: Path,
    timeout: float,
) -> tuple[Any, int]:
    images_file = work / "scale-images.json"
    images_file.write_text(json.dumps(images))
    manifest = f"sqlite:///{(out / 'manifest.sqlite').resolve()}"
    out.mkdir(parents=True, exist_ok=True)
    measured = run_measured(
        [
            PYTHON,
            "-m",
            "bench.synthetic",
            "--manifest",
            manifest,
            "--images",
            str(images_file),
            "--items",
            str(items),
            "--tile",
            str(TILE),
            "--api-base",
            sim.base_url,
        ],
        logs=logs,
        timeout=timeout,
    )
    if measured.returncode != 0:
        raise BenchError(f"synthetic plan exited {measured.returncode}: {measured.stderr[-2000:]}")
    return measured, int(json.loads(measured.stdout.strip().splitlines()[-1])["items"])


def run(options: Options, work: Path) -> tuple[list[Row], list[str]]:
    """Plan, `status`, then a resumed mirror stopped (SIGINT) after its first tile request."""
    sections, extra = scale_catalogue_shape(options.scale_items)
    logs = work / "logs"
    out = work / "scale-mirror"
    with SimulatorProcess(
        logs=logs / "simulator-scale",
        sections=sections,
        extra_connectivity_datasets=extra,
        image_scale=1.0,
    ) as sim:
        data_sets, images = _pick_images(sim, options.scale_items)
        real = mirror.has_option("plan", "--tile")
        if real:
            how = f"plan --tile {TILE} --downsample 0"
            planned, items = _plan_real(
                sim, out, data_sets, logs / "scale-plan", options.step_timeout
            )
            resume_flags = ["--tile", str(TILE), "--downsample", "0"]
        else:
            how = "synthetic tiles via Manifest.add_items"
            planned, items = _plan_synthetic(
                sim,
                out,
                images,
                options.scale_items,
                work,
                logs / "scale-plan",
                options.step_timeout,
            )
            resume_flags = []

        status = run_measured(
            crawler("status", "--out", str(out)),
            logs=logs / "scale-status",
            timeout=options.step_timeout,
        )
        if status.returncode != 0:
            raise BenchError(f"status exited {status.returncode}: {status.stderr[-2000:]}")

        sim.ask("reset")
        first = FirstRequest(sim, stop_on="image", give_up=FIRST_REQUEST_WAIT)
        resumed = mirror.run_mirror(
            sim.base_url,
            out,
            data_sets,
            concurrency=options.concurrency,
            logs=logs / "scale-resume",
            timeout=options.step_timeout,
            extra=resume_flags,
            watch=first,
            expect_exit=(0, 1, 130),
            need_summary=False,
        )
    case = f"{items:,} tile items ({how})"

    def row(measure: str, value: float, unit: str = "s", limit: float | None = None) -> Row:
        return Row("scale", case, measure, value, unit, limit)

    notes = [
        f"Scale: {len(data_sets)} data set(s), {len(images):,} full-resolution section images of "
        f"the synthetic catalogue; the resumed mirror was stopped with SIGINT after its first "
        f"tile request (exit {resumed.measured.returncode})."
    ]
    if not real:
        notes.append(
            "Scale: `plan --tile` does not exist yet, so the plan row times `bench.synthetic` "
            "(the manifest insert, no RMA seeding); the harness switches to the real command "
            "when `allen-mirror plan --help` lists `--tile`."
        )
    return [
        row("plan, process wall", planned.wall, limit=PLAN_SECONDS),
        row("plan, peak RSS", planned.maxrss_mb, "MB", PLAN_RSS_MB),
        row("status, process wall", status.wall, limit=STATUS_S),
        row("resumed mirror: start → first request (RMA)", first.seconds.get("rma", float("nan"))),
        row(
            "resumed mirror: start → first tile request",
            first.seconds.get("image", float("nan")),
            limit=FIRST_REQUEST_S,
        ),
    ], notes
