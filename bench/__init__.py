"""Benchmarks of allen-mirror against the network's limit (issue 7): `python -m bench`.

Every contestant runs as its own process against the simulator, itself a separate process
(`bench.server`), over loopback:

1. throughput: the same URL list (what `plan` records, read back with `ls`) fetched by
   `python -m crawler mirror` and by a minimal aiohttp loop (`bench.minimal`), at each latency;
   wall time against each other and against the bound ⌈n/C⌉·L.
2. overhead: CPU seconds (user + system, from `os.wait4`) per 1,000 images at zero latency,
   whole process and marginal (difference between two sizes, start-up cancelled out).
3. scale: a ~1,000,000-item tile manifest: plan time and peak RSS, `status` time, and the
   time from starting a resumed mirror to its first request.
4. memory: peak RSS of mirrors of growing size.
5. products (issue 16): `plan` of a whole synthetic product against a minimal batched seeding
   client (`bench.minimal_seed`), an ISH-like product's mirror against the bound, a no-op
   `sync` over ~100,000 done items against its bound, `verify` against `sha256sum`.

Layout: `options` (flags) → `throughput`, `scale`, `memory`, `products` (one section each)
over `procs` (measured children, the simulator process), `mirror` (the real CLI), `minimal`,
`minimal_seed`, `synthetic` and `server` (the child programs), `selection` (pure decisions)
→ `report` (table, doc).
"""
