"""What the client asks a server for: downloads uncompressed, RMA pages compressed.

A real aiohttp server records each request's headers (the session's defaults are merged by
aiohttp, so only a server sees what is really sent).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from crawler.client import USER_AGENT, ApiClient
from crawler.config import Settings
from crawler.localstore import LocalStore


async def test_downloads_ask_for_identity_and_pages_for_gzip(tmp_path: Path) -> None:
    seen: dict[str, dict[str, str]] = {}

    async def download(request: web.Request) -> web.Response:
        seen["download"] = dict(request.headers)
        return web.Response(body=b"grid bytes", content_type="application/octet-stream")

    async def page(request: web.Request) -> web.Response:
        seen["page"] = dict(request.headers)
        return web.json_response(
            {"success": True, "id": 0, "start_row": 0, "num_rows": 0, "total_rows": 0, "msg": []}
        )

    app = web.Application()
    app.router.add_get("/grid", download)
    app.router.add_get("/api/v2/data/query.json", page)
    async with TestServer(app) as server:
        base = str(server.make_url("/")).rstrip("/")
        store = LocalStore(tmp_path)
        async with ApiClient.open(Settings(api_base=base)) as client:
            async with store.part("grid.bin") as part:
                status = await client.stream_into(f"{base}/grid", part, image=False, limit=1024)
            await client.get_page(f"{base}/api/v2/data/query.json?criteria=model::Gene")
    assert status == 200 and part.size == len(b"grid bytes")
    assert seen["download"]["Accept-Encoding"] == "identity"
    assert seen["page"]["Accept-Encoding"] == "gzip, deflate"
    assert seen["download"]["User-Agent"] == seen["page"]["User-Agent"] == USER_AGENT
