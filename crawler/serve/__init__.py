"""``allen-mirror serve``: a mirror answered as the Allen API, for AllenSDK scripts offline.

Layout (data flows top to bottom): `records` (OUT's JSON files as RMA tables) and `files`
(the manifest's done files, keyed by what a request means) → `source` (the mirror as a
`DataSource`, with `hints` for what it lacks) → the API surface shared with the simulator
(`crawler.simulator.routes.answer`) → `app` (aiohttp, access log) with `fallback` (a live API
for what is missing, `--record` to keep it) → `server` (start, signals, stop). `loading` reads
the mirror once at start.
"""

from crawler.serve.server import ServeOptions, serve

__all__ = ["ServeOptions", "serve"]
