"""``locate``: the image synchronization service, answered offline from the mirror's files.

Exit codes: 0 answered; 2 a bad value or an id the mirror does not hold; 1 the record has no
alignment (crawler.errors.NoAlignmentError). Reads only, so it works offline and on a
read-only mirror.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crawler.cli.app import app
from crawler.cli.common import load, parse_ids
from crawler.errors import UsageError


def parse_number(text: str, option: str) -> float:
    """A finite decimal number, or a usage error naming the option."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid {option} {text!r}: expected a number") from None
    if not math.isfinite(value):
        raise UsageError(f"invalid {option} {text!r}: expected a finite number")
    return value


def parse_point(text: str) -> tuple[float, float, float]:
    """``--reference X,Y,Z``: three numbers in reference-space µm."""
    parts = text.split(",")
    if len(parts) != 3:
        raise UsageError(f"invalid --reference {text!r}: expected X,Y,Z in µm")
    x, y, z = (parse_number(part.strip(), "--reference") for part in parts)
    return x, y, z


def parse_downsample(text: str | None) -> int:
    """``--downsample N``: the tier the pixel coordinates are given in (0 = full resolution)."""
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) > 16:
        raise UsageError(f"invalid --downsample {text!r}: expected a whole number 0-16")
    return int(text)


def one_id(text: str, what: str) -> int:
    """Exactly one positive id."""
    ids = parse_ids([text], what)
    if len(ids) != 1:
        raise UsageError(f"give one {what} id, not {text!r}")
    return ids[0]


if TYPE_CHECKING:
    ParamType = click.ParamType[Any, Any]  # generic from click 8.3 on
else:
    ParamType = click.ParamType


class Typed(ParamType):
    """A value shown as INTEGER or FLOAT in --help but parsed here, so that a bad one is named
    in our words (``invalid --x 'abc': expected a number``)."""

    def __init__(self, name: str, parse: Callable[[str, str], object]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        option = param.opts[0] if param is not None else "value"
        return self.parse(str(value), option)


NUMBER = Typed("float", parse_number)
TIER = Typed("integer", lambda text, _: parse_downsample(text))
IMAGE_ID = Typed("integer", lambda text, _: one_id(text, "image"))
DATA_SET_ID = Typed("integer", lambda text, _: one_id(text, "data set"))


@app.command()
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Mirror directory [default: ./mirror]."
)
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="TOML config file [default: none; env ALLEN_MIRROR_CONFIG].",
)
@click.option(
    "--image", "image", type=IMAGE_ID, help="SectionImage id: map its pixel --x, --y to the CCF."
)
@click.option(
    "--x", "x", type=NUMBER, help="Pixel column, full resolution (or of tier --downsample)."
)
@click.option("--y", "y", type=NUMBER, help="Pixel row, full resolution (or of tier --downsample).")
@click.option("--downsample", type=TIER, help="--x and --y are pixels of this tier [default: 0].")
@click.option(
    "--dataset",
    "-d",
    "data_set",
    type=DATA_SET_ID,
    help="SectionDataSet id: map --reference to it.",
)
@click.option("--reference", help="A CCF point X,Y,Z in µm (posterior, inferior, right).")
def locate(
    out: Path | None,
    config: Path | None,
    image: int | None,
    x: float | None,
    y: float | None,
    downsample: int | None,
    data_set: int | None,
    reference: str | None,
) -> None:
    """Offline image sync: a pixel's CCF point and structure, or a CCF point's nearest section.

    \b
    Examples:
      allen-mirror locate --out /data/allen --image 102146167 --x 6000 --y 4000
      allen-mirror locate --image 102146167 --x 375 --y 250 --downsample 4
      allen-mirror locate --dataset 100141599 --reference 7000,4000,5000
    """
    from crawler.atlas.mirror import locate_image, locate_reference

    if (image is None) == (data_set is None):
        raise UsageError(
            "give either --image ID with --x and --y, or --dataset ID with --reference"
        )
    settings = load(config, out=out)
    if image is not None:
        if x is None or y is None or reference is not None:
            raise UsageError("--image takes --x and --y (pixels), not --reference")
        answer = locate_image(settings.out, image, x, y, downsample or 0)
    else:
        if reference is None or x is not None or y is not None or downsample is not None:
            raise UsageError("--dataset takes --reference X,Y,Z (µm), not --x, --y, --downsample")
        assert data_set is not None
        answer = locate_reference(settings.out, data_set, *parse_point(reference))
    click.echo(json.dumps(answer))
