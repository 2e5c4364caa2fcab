"""A hostile server must not cost memory, disk or the run (issue 15, points 3 to 6 and 11).

Real simulator over HTTP, the CLI in-process (or a subprocess where memory is measured); the
assertions are on failed rows, their errors and HTTP statuses, bytes on disk and elapsed time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.simulator import SimulatorConfig, expected_bytes, serve_in_thread
from tests.conftest import FAST, ls_rows, run_cli, small_catalogue

DATA_SET = 100141599


def test_endless_trickling_gzip_and_fake_jpeg_bodies_each_end_as_they_should(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue(8)
    images = [i["id"] for i in catalogue.records("SectionImage") if i["data_set_id"] == DATA_SET]
    hostile = {
        images[0]: "endless",
        images[1]: "trickle",
        images[2]: "bad_structure",
        images[3]: "gzip_encoded",
    }
    with serve_in_thread(catalogue, SimulatorConfig(permanent_failures=hostile)) as sim:
        out = tmp_path / "m"
        started = time.monotonic()
        result = run_cli(
            capsys, "mirror", "--dataset", str(DATA_SET), "--out", str(out), "--api-base",
            sim.base_url, "--config", str(fast_config), "--retries", "1",
            "--max-item-bytes", "3000000", "--max-item-seconds", "2", *FAST,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.code == 1, result.err
        assert "Traceback" not in result.err
        assert elapsed < 30, "a trickling body is cut by --max-item-seconds"
        rows = {row["image_id"]: row for row in ls_rows(capsys, out)}
        endless, trickle, fake, packed = (rows[i] for i in images[:4])
        assert endless["status"] == "failed" and "larger than 3000000 bytes" in endless["error"]
        assert endless["http_status"] == 200 and endless["attempts"] == 1  # not retried
        assert trickle["status"] == "failed" and "not complete after 2 s" in trickle["error"]
        assert fake["status"] == "failed" and "JPEG structure is broken" in fake["error"]
        assert fake["http_status"] == 200
        assert packed["status"] == "done", packed["error"]
        ref = str(packed["url"])[len(sim.base_url) :]
        assert (out / str(packed["path"])).read_bytes() == expected_bytes(catalogue, ref)
        others = [row for image, row in rows.items() if image not in hostile]
        assert others and all(row["status"] == "done" for row in others)
        for row in (endless, trickle, fake):
            assert not (out / str(row["path"])).exists()
        assert not list(out.rglob("*.part"))
        on_disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        assert on_disk < 5_000_000


def _run_measured(args: list[str], log: Path, timeout: float = 90) -> tuple[int, str, int]:
    """Exit code, stderr and peak RSS (kB) of ``python -m crawler ARGS`` (stderr via ``log``)."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "crawler", *args], stdout=subprocess.DEVNULL, stderr=stderr
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                return process.returncode, log.read_text(), usage.ru_maxrss
            time.sleep(0.05)
        process.kill()
        process.wait()
    raise AssertionError("the run did not end: an endless page was read for ever")


def test_an_endless_rma_page_is_cut_with_one_line_naming_the_query(tmp_path: Path) -> None:
    config = SimulatorConfig(url_faults={"model::SectionImage": "endless"})
    with serve_in_thread(small_catalogue(4), config) as sim:
        code, err, peak_kb = _run_measured(
            [
                "mirror",
                "--dataset",
                str(DATA_SET),
                "--out",
                str(tmp_path / "m"),
                "--api-base",
                sim.base_url,
                *FAST,
            ],
            tmp_path / "stderr.log",
        )
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("allen-mirror: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "RMA page larger than 67108864 bytes" in lines[0]
    assert "model::SectionImage" in lines[0]
    assert peak_kb < 400_000, f"peak RSS {peak_kb} kB: the page was not bounded"
