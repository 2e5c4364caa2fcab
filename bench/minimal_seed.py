"""`python -m bench.minimal_seed`: the least a batched seeding client can do.

One aiohttp session and a semaphore of C. It lists a product's data sets (pages of the same
SectionDataSet query the crawler sends, includes and all), then asks for their SectionImages
``--per-query`` data sets at a time with ``[data_set_id$in...]``, every query paged the way
the live service needs (order by id, advance by rows received, stop on a short page), every
page decoded. No manifest, no planning, no files, no retries. Its time is what the simulator
and the network allow for seeding a product; `allen-mirror plan` is measured against it.

Output: one JSON line, {"seconds", "requests", "data_sets", "images"}; seconds run from the
first request to the last page decoded (interpreter start-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

INCLUDES = (
    "rma::include,equalization,products,alignment3d,"
    "specimen(donor(transgenic_lines),stereotaxic_injections(primary_injection_structure,structures)),"
    "genes,plane_of_section"
)


def url(api_base: str, stages: str, page_size: int, start: int) -> str:
    options = f"rma::options[num_rows$eq{page_size}][start_row$eq{start}][order$eq'id']"
    return (
        f"{api_base}/api/v2/data/query.json?criteria={quote(f'{stages},{options}', safe=',:$=._-')}"
    )


class Client:
    def __init__(self, session: aiohttp.ClientSession, api_base: str, concurrency: int) -> None:
        self.session = session
        self.api_base = api_base
        self.semaphore = asyncio.Semaphore(concurrency)
        self.requests = 0

    async def rows(self, stages: str, page_size: int) -> list[dict[str, Any]]:
        """Every row of a query, page after page."""
        found: dict[int, dict[str, Any]] = {}
        start = 0
        while True:
            async with self.semaphore:
                self.requests += 1
                async with self.session.get(url(self.api_base, stages, page_size, start)) as reply:
                    page = json.loads(await reply.read())
            rows = page["msg"]
            for row in rows:
                found.setdefault(row["id"], row)
            if len(rows) < page_size:
                return list(found.values())
            start += len(rows)


async def image_rows(client: Client, ids: list[int], per_query: int, page_size: int) -> int:
    """The SectionImages (with alignments, as allen-mirror asks) of the data sets ``ids``,
    ``per_query`` of them per query, every query at once and every page decoded; how many."""

    async def images(chunk: list[int]) -> int:
        values = ",".join(str(i) for i in chunk)
        stages = (
            f"model::SectionImage,rma::criteria,[data_set_id$in{values}],rma::include,alignment2d"
        )
        return len(await client.rows(stages, page_size))

    chunks = [ids[i : i + per_query] for i in range(0, len(ids), per_query)]
    return sum(await asyncio.gather(*(images(chunk) for chunk in chunks)))


async def seed(
    api_base: str, product: int, per_query: int, concurrency: int, page_size: int
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, api_base, concurrency)
        started = time.perf_counter()
        stages = f"model::SectionDataSet,rma::criteria,products[id$eq{product}],{INCLUDES}"
        data_sets = [row for row in await client.rows(stages, page_size) if not row.get("failed")]
        ids = [int(row["id"]) for row in data_sets]
        images = await image_rows(client, ids, per_query, page_size)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "requests": client.requests,
        "data_sets": len(ids),
        "images": images,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_seed", description=__doc__)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--product", type=int, required=True)
    parser.add_argument("--per-query", type=int, required=True, help="data sets per image query")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--page-size", type=int, default=2000)
    args = parser.parse_args(argv)
    result = asyncio.run(
        seed(args.api_base, args.product, args.per_query, args.concurrency, args.page_size)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
