"""The index and data set pages: pure functions from views to HTML.

Views hold only what a page prints, already resolved to relative links and thumbnail sizes
(``crawler/catalogue/site.py`` makes them); everything from the API or the manifest is escaped
here, on output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crawler.catalogue.layout import e, page, pill
from crawler.catalogue.model import STATUSES
from crawler.catalogue.svg import human_bytes

Thumb = tuple[str, int, int]  # src, width, height
INDEX_FACTS = ("product", "plane", "specimen", "injection", "line", "genes")
HISTORY_PAGE = "history.html"


@dataclass(slots=True)
class VariantView:
    """One kind (and tier) of a section: a link to its file or tile directory."""

    label: str  # "section ds4", "projection ds0 tiles"
    href: str | None  # relative link to the file, the tile directory; None while not done
    status: str


@dataclass(slots=True)
class SectionView:
    """One card of a data set page."""

    number: int
    image_id: int
    thumb: Thumb | None
    href: str | None  # the main variant's full file
    variants: list[VariantView] = field(default_factory=list)
    status: str = "done"  # done | failed | pending | removed | api-failed
    error: str | None = None
    ccf: str | None = None  # "x, y, z µm · ACR (name)"


@dataclass(slots=True)
class FileView:
    """A file of the data set that is not a section image."""

    label: str
    href: str | None
    status: str
    size: int
    error: str | None


@dataclass(slots=True)
class DataSetView:
    """Everything a data set (or atlas) page shows."""

    directory: str
    title: str
    facts: dict[str, str]
    counts: dict[str, int]
    bytes: int
    last_synced: str | None
    sections: list[SectionView]
    files: list[FileView]
    alignment: str | None  # a line on the Alignment3d, or None without one
    alignment_matrix: str | None  # the tvr matrix, for those who want it
    unplanned: int = 0  # sections the API lists that the manifest has no item for
    ccf_note: str | None = None  # why there are no CCF positions


def index_row(view: DataSetView, page_href: str, strip: Sequence[Thumb]) -> dict[str, Any]:
    """The index's row for a data set: plain JSON, kept between builds so an unchanged data set
    is neither re-read nor re-rendered."""
    return {
        "directory": view.directory,
        "title": view.title,
        "href": page_href,
        "facts": {k: v for k, v in view.facts.items() if k in INDEX_FACTS},
        "counts": {s: view.counts.get(s, 0) for s in STATUSES},
        "bytes": view.bytes,
        "last_synced": view.last_synced,
        "strip": [list(t) for t in strip],
    }


def strip_of(sections: Sequence[SectionView], count: int = 6) -> list[Thumb]:
    """A few thumbnails spread evenly over the data set's sections."""
    thumbs = [s.thumb for s in sections if s.thumb is not None]
    if len(thumbs) <= count:
        return thumbs
    step = (len(thumbs) - 1) / (count - 1)
    return [thumbs[round(i * step)] for i in range(count)]


def _counts_cells(counts: Mapping[str, int]) -> str:
    return "".join(
        f'<td class="n" data-v="{counts.get(s, 0)}">'
        + (pill(s, counts[s]) if counts.get(s) else '<span class="muted">0</span>')
        + "</td>"
        for s in STATUSES
    )


def index_page(
    rows: Sequence[Mapping[str, Any]],
    atlas_wide: Sequence[FileView],
    note: str,
    index_name: str = "index.html",
) -> str:
    """One row per data set and atlas, sortable and filterable; the atlas-wide files below."""
    head = (
        "<tr><th>thumbnails</th><th data-sort='t'>id</th>"
        + "".join(f"<th data-sort='t'>{e(f)}</th>" for f in INDEX_FACTS)
        + "".join(f"<th class='n' data-sort='n'>{e(s)}</th>" for s in STATUSES)
        + "<th class='n' data-sort='n'>bytes</th><th data-sort='t'>last synced</th></tr>"
    )
    body: list[str] = []
    total: dict[str, int] = {s: 0 for s in STATUSES}
    total_bytes = 0
    for row in rows:
        facts, counts = row["facts"], row["counts"]
        for s in STATUSES:
            total[s] += counts.get(s, 0)
        total_bytes += row["bytes"]
        text = " ".join([row["directory"], row["title"], *facts.values()]).lower()
        strip = "".join(
            f'<img src="{e(src)}" width="{w}" height="{h}" alt="" loading="lazy">'
            for src, w, h in row["strip"]
        )
        body.append(
            f'<tr data-text="{e(text)}"><td><a class="strip" href="{e(row["href"])}">{strip}</a>'
            f'</td><td data-v="{e(row["directory"])}"><a href="{e(row["href"])}">'
            f"{e(row['title'])}</a></td>"
            + "".join(f"<td>{e(facts.get(f, ''))}</td>" for f in INDEX_FACTS)
            + _counts_cells(counts)
            + f'<td class="n" data-v="{row["bytes"]}">{e(human_bytes(row["bytes"]))}</td>'
            f"<td>{e(row['last_synced'] or '-')}</td></tr>"
        )
    summary = (
        f"{len(rows)} data sets and atlases · "
        + " · ".join(f"{total[s]} {s}" for s in STATUSES if total[s])
        + f" · {human_bytes(total_bytes)}"
    )
    parts = [
        "<h1>Mirror catalogue</h1>",
        f'<p class="muted">{e(summary)}</p>',
        '<div class="tools"><input id="filter" type="search" placeholder="filter: words in any '
        'column, e.g. coronal MOp" aria-label="filter rows"><span id="shown" class="muted">'
        "</span></div>",
        f'<table class="sortable"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>',
    ]
    if atlas_wide:
        parts.append("<h2>Atlas-wide files</h2>" + files_table(atlas_wide))
    return page("Mirror catalogue", "".join(parts), nav=nav(index_name), note=note)


def files_table(files: Sequence[FileView]) -> str:
    """Grids, unionizes, the ontology and CCF volumes: link, status, size, error."""
    rows = "".join(
        "<tr><td>"
        + (f'<a href="{e(f.href)}">{e(f.label)}</a>' if f.href else e(f.label))
        + f"</td><td>{pill(f.status, f.status)}</td>"
        f'<td class="n">{e(human_bytes(f.size)) if f.size else ""}</td>'
        f'<td class="err">{e(f.error or "")}</td></tr>'
        for f in files
    )
    return f"<table><tbody>{rows}</tbody></table>"


def _section_card(section: SectionView) -> str:
    if section.thumb is not None:
        src, w, h = section.thumb
        image = f'<img src="{e(src)}" width="{w}" height="{h}" alt="section {section.number}" '
        image += 'loading="lazy">'
        picture = f'<a href="{e(section.href)}">{image}</a>' if section.href else image
    else:
        picture = f'<span class="none">{e(_no_picture(section.status))}</span>'
    kinds = " · ".join(
        (f'<a href="{e(v.href)}">{e(v.label)}</a>' if v.href else e(v.label))
        + ("" if v.status == "done" else f" {pill(v.status, v.status)}")
        for v in section.variants
    )
    failed = section.status in ("failed", "api-failed")
    caption = [
        f'<span class="num">§ {section.number}</span>',
        f'<span class="muted">image {section.image_id}</span>',
    ]
    if kinds:
        caption.append(f"<span>{kinds}</span>")
    if section.ccf:
        caption.append(f'<span class="ccf">{e(section.ccf)}</span>')
    if section.error:
        caption.append(f'<span class="err">{e(section.error)}</span>')
    return (
        f'<figure class="sec{" failed" if failed else ""}" id="s{section.number}">'
        f'<div class="pic">{picture}</div><figcaption>{"".join(caption)}</figcaption></figure>'
    )


def _no_picture(status: str) -> str:
    return {
        "api-failed": "failed at the API: not mirrored",
        "failed": "download failed",
        "pending": "not downloaded yet",
        "removed": "no longer listed by the API",
    }.get(status, "file missing")


def data_set_page(view: DataSetView, note: str, index_name: str = "index.html") -> str:
    """Every section in order as a card, the facts, the alignment and the other files."""
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in view.facts.items())
    counts = " ".join(pill(s, f"{view.counts[s]} {s}") for s in STATUSES if view.counts.get(s))
    facts += f"<dt>items</dt><dd>{counts or '-'} · {e(human_bytes(view.bytes))}</dd>"
    facts += f"<dt>last synced</dt><dd>{e(view.last_synced or '-')}</dd>"
    alignment = e(view.alignment or "none in the mirror")
    if view.alignment_matrix:
        alignment += (
            f"<details><summary>tvr (volume to reference, µm)</summary>"
            f"<pre>{e(view.alignment_matrix)}</pre></details>"
        )
    if view.ccf_note:
        alignment += f'<p class="muted">{e(view.ccf_note)}</p>'
    parts = [
        f"<h1>{e(view.title)}</h1>",
        '<div class="cols">',
        f'<div class="box"><dl class="facts">{facts}</dl></div>',
        f'<div class="box"><b>Alignment</b><br>{alignment}</div>',
        "</div>",
        f"<h2>Sections ({len(view.sections)})</h2>",
    ]
    if view.unplanned:
        parts.append(
            f'<p class="muted">{view.unplanned} more section(s) the API lists have no item in '
            "the manifest (outside the selection, e.g. --sections).</p>"
        )
    parts.append(f'<div class="grid">{"".join(_section_card(s) for s in view.sections)}</div>')
    if view.files:
        parts.append("<h2>Other files</h2>" + files_table(view.files))
    return page(view.title, "".join(parts), nav=nav(index_name), note=note)


def nav(index_name: str) -> list[tuple[str, str]]:
    """The links in every page's header."""
    return [("data sets", index_name), ("history", HISTORY_PAGE)]
