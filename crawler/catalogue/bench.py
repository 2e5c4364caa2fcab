"""A synthetic mirror of many small images, to time ``catalogue`` builds (not used by the tool).

    python -m crawler.catalogue.bench --out /tmp/big --images 100000 --per-data-set 500
    time allen-mirror catalogue --out /tmp/big      # first build: every thumbnail
    time allen-mirror catalogue --out /tmp/big      # again: nothing changed

Every image is one small JPEG with a distinct comment segment, so each has its own sha256 and
the first build really decodes every one; the manifest rows go in through the manifest's own
``add_items`` and ``record``; each data set gets a ``dataset.json`` with aligned sections.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import anyio
from PIL import Image

from crawler.manifest import Status, open_manifest
from crawler.manifest.repository import Outcome
from crawler.plan import Item

ALIGNMENT2D = {"tsv_00": 0.35, "tsv_01": 0.0, "tsv_02": 0.0, "tsv_03": 0.35, "tsv_04": 900.0}
ALIGNMENT2D |= {"tsv_05": 0.0, "tvs_00": 2.857, "tvs_01": 0.0, "tvs_02": 0.0, "tvs_03": 2.857}
ALIGNMENT2D |= {"tvs_04": -2571.4, "tvs_05": 0.0}
ALIGNMENT3D = {f"tvr_{i:02d}": v for i, v in enumerate([0, 0, -1, 0, 1, 0, 1, 0, 0, 1e4, 0, 0])}
ALIGNMENT3D |= {f"trv_{i:02d}": v for i, v in enumerate([0, 0, 1, 0, 1, 0, -1, 0, 0, 0, 0, 1e4])}


def template(width: int = 240, height: int = 180) -> bytes:
    """A small JPEG with some structure in it."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def distinct(jpeg: bytes, n: int) -> bytes:
    """The same picture with a COM segment naming ``n``: other bytes, same decoding cost."""
    comment = f"synthetic {n}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return jpeg[:2] + segment + jpeg[2:]


async def make(out: Path, images: int, per_data_set: int) -> None:
    jpeg = template()
    manifest = await open_manifest(f"sqlite:///{out / 'manifest.sqlite'}")
    try:
        done = 0
        data_set = 100_000_000
        while done < images:
            data_set += 1
            count = min(per_data_set, images - done)
            records, items, bodies = [], [], {}
            for number in range(1, count + 1):
                image_id = data_set * 1000 + number
                path = f"{data_set}/section/ds4/{number:04d}_{image_id}.jpg"
                body = distinct(jpeg, done + number)
                bodies[path] = body
                items.append(Item(f"/bench/{path}", path, "section", data_set, image_id))
                records.append(
                    {"id": image_id, "section_number": number, "failed": False, "x": 0, "y": 0}
                    | {"width": 3360, "height": 2520, "alignment2d": ALIGNMENT2D}
                )
            directory = out / str(data_set) / "section" / "ds4"
            directory.mkdir(parents=True, exist_ok=True)
            for path, body in bodies.items():
                (out / path).write_bytes(body)
            document = {
                "data_set": {"id": data_set, "section_thickness": 25.0}
                | {"products": [{"name": "Synthetic"}]}
                | {"alignment3d": ALIGNMENT3D},
                "labels": {"plane_of_section": "coronal", "injection_structures": ["MOp"]},
                "section_images": records,
            }
            (out / str(data_set) / "dataset.json").write_text(json.dumps(document))
            await manifest.add_items(items, "http://bench")
            claimed = await manifest.pending(after=0, limit=count + done + 10)
            outcomes = [
                Outcome(
                    c.id,
                    Status.DONE,
                    "http://bench" + c.ref,
                    1,
                    200,
                    len(bodies[c.path]),
                    hashlib.sha256(bodies[c.path]).hexdigest(),
                )
                for c in claimed
                if c.path in bodies
            ]
            await manifest.record(outcomes)
            done += count
    finally:
        await manifest.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-data-set", type=int, default=500)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    anyio.run(make, options.out, options.images, options.per_data_set)


if __name__ == "__main__":
    main()
