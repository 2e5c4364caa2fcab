"""An offline stand-in for api.brain-map.org, faithful to shared/ALLEN_API.md, for tests.

Layout (data flows top to bottom): `schema` → `catalogue`/`synth` (records) → `synthetic`
(the catalogue as a `source.DataSource`, rendering bytes with `imaging`/`render`/`grids`/
`ccf_volumes`) → the API surface: `rma`/`query` (metadata), `sync_services` (structure graph,
image sync) and `routes` (the fault-free reply) → `faults` + `config` (what goes wrong) → `app`
(aiohttp I/O) → `server` (start/stop/run). The API surface reads only a `DataSource`, so
`crawler.serve` runs the same code on a mirror. Nothing here imports the rest of the `crawler`
package.
"""

from crawler.simulator.catalogue import Catalogue, tier_count
from crawler.simulator.config import FAULT_KINDS, PERMANENT_KINDS, SimulatorConfig
from crawler.simulator.counters import Counters
from crawler.simulator.routes import expected_bytes, resolve
from crawler.simulator.server import Simulator, ThreadedSimulator, run, serve_in_thread

__all__ = [
    "FAULT_KINDS",
    "PERMANENT_KINDS",
    "Catalogue",
    "Counters",
    "Simulator",
    "SimulatorConfig",
    "ThreadedSimulator",
    "expected_bytes",
    "resolve",
    "run",
    "serve_in_thread",
    "tier_count",
]
