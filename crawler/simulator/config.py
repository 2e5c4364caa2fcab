"""Run-time knobs of the simulator: latency, throttling and the fault menu of ALLEN_API.md §5.

Deliberately mutable: tests switch faults on and off between phases of one server's life.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAULT_KINDS: frozenset[str] = frozenset(
    {
        "http_500",
        "http_502",
        "http_503_retry_after",
        "http_429_retry_after",
        "reset",
        "truncated",
        "stall",
        "html_outage",
        "malformed_json",
        "empty_body",
        "redirect",
        "corrupt_jpeg",
        "corrupt_grid",
        "gzip_encoded",  # a correct body sent with Content-Encoding: gzip (not a fault to cure)
    }
)
# Per image (``permanent_failures``) or per URL substring (``url_faults``), every attempt:
# endless: a body that never ends; trickle: the body at ``trickle_bytes_per_second``;
# bad_structure: FF D8, noise, FF D9 (a JPEG only by its first and last bytes).
HOSTILE_KINDS: frozenset[str] = frozenset({"endless", "trickle", "bad_structure"})
PERMANENT_KINDS: frozenset[str] = frozenset(
    {"http_500", "http_404", "corrupt_jpeg", "gzip_encoded"} | HOSTILE_KINDS
)
# A record field set to this is left out of the record (``record_patches``).
MISSING = "<missing>"


@dataclass
class SimulatorConfig:
    """What every request experiences; read afresh by each request, so edits apply at once."""

    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: frozenset[str] = FAULT_KINDS
    retry_after_seconds: int = 1
    stall_seconds: float = 60.0
    seed: int = 0
    bytes_per_second: int | None = None
    permanent_failures: dict[int, str] = field(default_factory=dict)
    overstate_total_rows: bool = True
    # A fault for every URL containing the key, e.g. {"model::SectionImage": "endless"}.
    url_faults: dict[str, str] = field(default_factory=dict)
    # Malformed records: RMA rows whose id is the key get these fields (MISSING drops one).
    record_patches: dict[int, dict[str, object]] = field(default_factory=dict)
    trickle_bytes_per_second: int = 100

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject settings that would make the simulator lie about what it does."""
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        unknown = set(self.fault_kinds) - FAULT_KINDS
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        bad = {
            k: v
            for k, v in [*self.permanent_failures.items(), *self.url_faults.items()]
            if v not in PERMANENT_KINDS
        }
        if bad:
            raise ValueError(f"permanent failures must be one of {sorted(PERMANENT_KINDS)}: {bad}")
        if self.latency_ms < 0 or self.stall_seconds < 0 or self.retry_after_seconds < 0:
            raise ValueError("latency_ms, stall_seconds and retry_after_seconds must be >= 0")
        if self.bytes_per_second is not None and self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
