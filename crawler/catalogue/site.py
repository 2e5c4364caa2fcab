"""Build the site: decide which pages are stale, make their views, write what changed.

A data set's page depends on its manifest rows (the census digest), its record file, the CCF
files, where the site sits relative to the mirror, and the catalogue's own code; together they
are the page's key, kept in ``.catalogue-state.json`` with the page's index row (the thumbnails
it shows are in ``.catalogue-pages/``). A page whose key is unchanged (and whose thumbnails
exist) is neither read nor rendered; a page that is rendered is written only if its bytes
differ. So a rebuild of an unchanged mirror costs one pass over the manifest and writes at most
the history page.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crawler.atlas.annotation import values_at
from crawler.atlas.mirror import CCF_DIRECTORY, ONTOLOGY_FILE, annotation_file
from crawler.atlas.ontology import read_ontology
from crawler.catalogue.gather import Census, Spill
from crawler.catalogue.history import history_page, read_reports, run_view
from crawler.catalogue.model import ATLAS_WIDE, STATUSES, SectionEntry, collapse
from crawler.catalogue.pages import (
    HISTORY_PAGE,
    DataSetView,
    FileView,
    SectionView,
    VariantView,
    data_set_page,
    index_page,
    index_row,
    strip_of,
)
from crawler.catalogue.positions import section_centre
from crawler.catalogue.records import Described, read_described, record_file
from crawler.catalogue.thumbs import Shown, ThumbJob, Thumbnails, thumb_name
from crawler.errors import AllenMirrorError
from crawler.localstore import write_atomic

STATE = ".catalogue-state.json"  # each page's key and index row
PAGE_DIGESTS = ".catalogue-pages"  # per page, the digests of the thumbnails it shows
PAGES_PER_BATCH = 32  # stale pages whose CCF positions are found in one annotation pass
_SAFE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(slots=True)
class BuildStats:
    """What a build did, for the command's one line."""

    data_sets: int = 0
    pages_rendered: int = 0
    pages_written: int = 0
    thumbs_made: int = 0
    thumbs_removed: int = 0


def relative_href(target: Path, site: Path) -> str:
    """A link from a page in ``site`` to ``target``: forward slashes, percent-encoded."""
    return quote(os.path.relpath(target, site).replace(os.sep, "/"))


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically unless the file already holds exactly this; True if written."""
    data = text.encode()
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, data, fsync=False)
    return True


def _stat_key(path: Path | None) -> list[int] | None:
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns] if info is not None else None


def _ordered(directory: str) -> tuple[int, int, str]:
    """Data sets by id, then atlases by id, then anything else by name."""
    if directory.isdigit():
        return (0, int(directory), "")
    number = directory.removeprefix("atlas_")
    return (1, int(number), "") if number.isdigit() else (2, 0, directory)


def render_site(
    out: Path, index_file: Path, census: Mapping[str, Census], spill: Spill, runs: list[Any]
) -> BuildStats:
    """Write every stale page, the index and the history page under ``index_file``'s folder.

    Memory stays that of a few data sets: an unchanged page is checked from its own digest
    file, stale pages are made a batch at a time, and old thumbnails are swept bucket by bucket.
    """
    site = index_file.parent
    site.mkdir(parents=True, exist_ok=True)
    (site / PAGE_DIGESTS).mkdir(exist_ok=True)
    thumbs = Thumbnails(site / "thumbs")
    shown = Shown(spill.root / "shown")
    stats = BuildStats()
    old = _load_state(site)
    ccf_files = out / CCF_DIRECTORY / ONTOLOGY_FILE, annotation_file(out)
    common: list[Any] = [markup_version(), os.path.relpath(out, site), index_file.name]
    common += [_stat_key(path) for path in ccf_files]
    directories = sorted(
        (d for d in census if d != ATLAS_WIDE and _SAFE.fullmatch(d)), key=_ordered
    )
    pages: dict[str, Any] = {}
    stale: list[str] = []
    for directory in directories:
        key_source = [*common, census[directory].digest, _stat_key(record_file(out, directory))]
        key = hashlib.sha256(json.dumps(key_source).encode()).hexdigest()
        entry = old.get(directory)
        if entry is not None and entry.get("key") == key and (site / f"{directory}.html").is_file():
            digests = _read_digests(site, directory)
            if digests is not None and all(thumbs.exists(digest) for digest in digests):
                pages[directory] = entry
                shown.add(digests)
                continue
        pages[directory] = {"key": key}
        stale.append(directory)
    for start in range(0, len(stale), PAGES_PER_BATCH):
        batch = stale[start : start + PAGES_PER_BATCH]
        positions, ccf_note = ccf_positions(out, batch, *ccf_files)
        for directory in batch:
            view, digests, strip = data_set_view(
                out, site, directory, census[directory], spill, thumbs, positions
            )
            if view.alignment is not None and ccf_note:
                view.ccf_note = ccf_note
            stats.pages_rendered += 1
            stats.pages_written += write_if_changed(
                site / f"{directory}.html", data_set_page(view, "", index_file.name)
            )
            pages[directory]["row"] = index_row(view, f"{directory}.html", strip)
            write_if_changed(_digests_file(site, directory), "".join(f"{d}\n" for d in digests))
            shown.add(digests)
    for directory in set(old) - set(pages):
        (site / f"{directory}.html").unlink(missing_ok=True)
        _digests_file(site, directory).unlink(missing_ok=True)
    stats.thumbs_removed = thumbs.keep_only(shown)
    stats.thumbs_made = thumbs.made
    stats.data_sets = len(directories)
    atlas_wide = [
        _file_view(out, site, row)
        for row in (spill.rows(ATLAS_WIDE) if ATLAS_WIDE in census else [])
    ]
    rows = [pages[d]["row"] for d in directories]
    note = f"mirror {out}"
    stats.pages_written += write_if_changed(
        index_file, index_page(rows, atlas_wide, note, index_file.name)
    )
    reports = read_reports(out, runs)
    views = []
    for run in runs:
        path, document = reports.get(int(run["id"]), (None, None))
        href = relative_href(path, site) if path is not None else None
        views.append(run_view(run, document, href))
    stats.pages_written += write_if_changed(
        site / HISTORY_PAGE, history_page(views, note, index_file.name)
    )
    _save_state(site, pages)
    return stats


def markup_version() -> str:
    """A hash of the catalogue's own code: a change in how pages are made renders every page
    once, with no version number to remember to bump."""
    digest = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def _digests_file(site: Path, directory: str) -> Path:
    return site / PAGE_DIGESTS / f"{directory}.txt"


def _read_digests(site: Path, directory: str) -> list[str] | None:
    """The thumbnails a page shows, as its last build wrote them; None if unknown."""
    try:
        return _digests_file(site, directory).read_text(encoding="ascii").split()
    except OSError:
        return None


def ccf_positions(
    out: Path, directories: Sequence[str], ontology_path: Path, annotation: Path | None
) -> tuple[dict[tuple[str, int], str], str | None]:
    """Each aligned section's centre in CCF µm, with the structure there where the ontology
    and an annotation are mirrored; all sections of all stale pages in one annotation pass."""
    keys: list[tuple[str, int]] = []
    points: list[tuple[float, float, float]] = []
    for directory in directories:
        described = read_described(out, directory)
        for image in described.images:
            point = section_centre(described, image)
            if point is not None:
                keys.append((directory, image.image_id))
                points.append(point)
    text = {
        key: f"{x:.0f}, {y:.0f}, {z:.0f} µm" for key, (x, y, z) in zip(keys, points, strict=True)
    }
    if annotation is None or not ontology_path.is_file():
        return text, "mirror with --with ontology,annotation to see the structure at each section"
    try:
        ontology = read_ontology(ontology_path)
        found = values_at(annotation, points)
    except AllenMirrorError as exc:
        return text, f"structures not shown: {exc}"
    for key, structure_id in zip(keys, found, strict=True):
        structure = ontology.by_id.get(structure_id) if structure_id else None
        if structure is not None:
            text[key] += f" · {structure.acronym} ({structure.name})"
        else:
            text[key] += " · outside the brain"
    return text, None


def data_set_view(
    out: Path,
    site: Path,
    directory: str,
    census: Census,
    spill: Spill,
    thumbs: Thumbnails,
    positions: Mapping[tuple[str, int], str],
) -> tuple[DataSetView, list[str], list[tuple[str, int, int]]]:
    """A data set page's view, with its thumbnails made; also the digests it shows and the
    index's strip."""
    described = read_described(out, directory)
    entries, others = collapse(spill.rows(directory))
    mains = {(s.number, s.image_id): s.main() for s in entries}
    sizes = thumbs.ensure(
        ThumbJob(main.digest, out / main.path, main.tiled)
        for main in mains.values()
        if main is not None and main.counts.get("done")
    )
    sections: list[SectionView] = []
    digests: list[str] = []
    planned = {(s.number, s.image_id) for s in entries}
    for entry in entries:
        card = _section_view(out, site, entry, sizes, positions.get((directory, entry.image_id)))
        main = mains[(entry.number, entry.image_id)]
        if card.thumb is not None and main is not None:
            digests.append(main.digest)
        sections.append(card)
    unplanned = 0
    for image in described.images:
        if (image.number, image.image_id) in planned:
            continue
        if image.failed:
            sections.append(
                SectionView(image.number, image.image_id, None, None, status="api-failed")
            )
        else:
            unplanned += 1
    sections.sort(key=lambda s: (s.number, s.image_id))
    view = DataSetView(
        directory=directory,
        title=described.title,
        facts=described.facts,
        counts={s: census.counts.get(s, 0) for s in STATUSES},
        bytes=census.bytes,
        last_synced=census.last_synced,
        sections=sections,
        files=[_file_view(out, site, other) for other in others],
        alignment=_alignment_line(described),
        alignment_matrix=_alignment_matrix(described),
        unplanned=unplanned,
        ccf_note=None,
    )
    return view, digests, strip_of(sections)


def _section_view(
    out: Path,
    site: Path,
    entry: SectionEntry,
    sizes: Mapping[str, tuple[int, int]],
    ccf: str | None,
) -> SectionView:
    main = entry.main()
    thumb = None
    if main is not None and (size := sizes.get(main.digest)) is not None:
        thumb = (f"thumbs/{thumb_name(main.digest)}", size[0], size[1])
    variants = [
        VariantView(
            f"{v.kind} {v.tier}" + (" tiles" if v.tiled else ""),
            relative_href(out / v.path, site) + ("/" if v.tiled else "")
            if v.counts.get("done")
            else None,
            v.status,
        )
        for v in entry.variants
    ]
    failed = entry.failed
    status = main.status if main is not None else "removed"
    if failed:
        status = "failed"
    error = "; ".join(f"{v.kind}: {v.error}" for v in failed if v.error) or None
    return SectionView(
        number=entry.number,
        image_id=entry.image_id,
        thumb=thumb,
        href=variants[entry.variants.index(main)].href if main is not None else None,
        variants=variants,
        status=status,
        error=error,
        ccf=ccf,
    )


def _file_view(out: Path, site: Path, row: Any) -> FileView:
    path, _, status, size, _, error, _ = row
    href = relative_href(out / path, site) if status == "done" else None
    return FileView(path.split("/", 1)[-1], href, status, size or 0, error)


def _alignment_line(described: Described) -> str | None:
    record = described.alignment3d
    if record is None:
        return None
    return (
        f"Alignment3d {record.get('id', '?')}: each section's centre is shown in CCF µm "
        "(x posterior, y inferior, z right), mapped as 'allen-mirror locate' maps a pixel."
    )


def _alignment_matrix(described: Described) -> str | None:
    record = described.alignment3d
    if record is None:
        return None
    rows = (("00", "01", "02", "09"), ("03", "04", "05", "10"), ("06", "07", "08", "11"))
    values = [[record.get(f"tvr_{k}") for k in row] for row in rows]
    if not all(isinstance(v, int | float) for row in values for v in row):
        return None
    return "\n".join("  ".join(f"{v:>12.6g}" for v in row) for row in values)


def _load_state(site: Path) -> dict[str, Any]:
    try:
        document = json.loads((site / STATE).read_bytes())
    except (OSError, ValueError):
        return {}
    pages = document.get("pages") if isinstance(document, dict) else None
    return pages if isinstance(pages, dict) else {}


def _save_state(site: Path, pages: Mapping[str, Any]) -> None:
    write_if_changed(site / STATE, json.dumps({"pages": pages}, separators=(",", ":")))
