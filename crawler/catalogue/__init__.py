"""``allen-mirror catalogue``: a static HTML site of the mirror, browsable offline.

    manifest ─► gather (one streaming pass: census per directory, rows spilled to disk)
                   │
                   ▼
               site (stale pages only) ─► thumbs (Pillow, by sha256) ─► pages, history (HTML, SVG)

Modules: ``model`` (paths → sections, pure), ``records`` (dataset.json facts, pure),
``positions`` (CCF position of each section), ``thumbs``, ``svg`` (charts, pure), ``layout``,
``pages`` and ``history`` (HTML, pure), ``gather`` (the manifest pass), ``site`` (what to
rebuild), ``build`` (the command's entry).
"""

from crawler.catalogue.build import build_catalogue, default_index
from crawler.catalogue.site import BuildStats

__all__ = ["BuildStats", "build_catalogue", "default_index"]
