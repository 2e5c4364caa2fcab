"""The `allen-mirror mirror ...` line that would fetch what a mirror was asked for and lacks.

Pure functions of the request and the records the mirror does hold, so the 404 of `serve` tells
the user exactly what to run (ALLEN_API.md parameters map back to `mirror` options here).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from crawler.simulator.imaging import RenderSpec

_IMAGE_OPTION = {"image": "section", "projection": "projection", "expression": "expression"}


def command(out: Path, *options: str) -> str:
    """``allen-mirror mirror --out OUT <options>``, quoted for a shell."""
    return " ".join(["allen-mirror", "mirror", "--out", shlex.quote(str(out)), *options])


def data_sets(out: Path, ids: Iterable[object], *extra: str) -> str:
    """Mirror these data sets (at most ten named), with extra options."""
    options = [part for i in list(ids)[:10] for part in ("--dataset", str(i))]
    return command(out, *options, *extra)


def image(
    out: Path,
    spec: RenderSpec,
    query: Mapping[str, str],
    *,
    data_set_id: int | None,
    atlas_id: int | None,
    section_number: object,
) -> str:
    """The rendering asked for, as `mirror` options: image kind, tier, tile, window, quality."""
    if atlas_id is not None:
        options = ["--atlas", str(atlas_id)]
        if spec.kind == "annotation":
            options.append("--annotation")
    else:
        options = [
            "--dataset",
            str(data_set_id),
            "--image",
            _IMAGE_OPTION.get(spec.kind, "section"),
        ]
    options += ["--downsample", str(spec.downsample)]
    if isinstance(section_number, int):
        options += ["--sections", str(section_number)]
    if any(name in query for name in ("left", "top", "width", "height")):
        options += ["--tile", str(max(spec.out_width, spec.out_height))]
    if "range" in query:
        options += ["--range", shlex.quote(query["range"])]
    if "quality" in query:
        options += ["--quality", shlex.quote(query["quality"])]
    return command(out, *options)
