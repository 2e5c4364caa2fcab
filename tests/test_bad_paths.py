"""One bad path fails that item with its reason; the run goes on (issue 15, point 8).

The mirror runs as a real subprocess without the capability to override file permissions, so
a directory that root may not write is unwritable to it too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.errors import DiskFullError, StorageError
from crawler.localstore import LocalStore
from crawler.simulator import ThreadedSimulator
from crawler.store import StoredFile
from tests.conftest import FAST, ls_rows, run_cli

DATA_SETS = ("100141599", "126862385")
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search"]  # fmt: skip


def mirror_command(sim: ThreadedSimulator, out: Path, fast_config: Path) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "mirror", "--dataset", DATA_SETS[0], "--dataset",
        DATA_SETS[1], "--out", str(out), "--api-base", sim.base_url, "--config",
        str(fast_config), "--retries", "1", *FAST,
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_a_directory_in_the_way_and_an_unwritable_directory_fail_only_their_items(
    sim: ThreadedSimulator, tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    planned = run_cli(
        capsys, "plan", "--dataset", DATA_SETS[0], "--dataset", DATA_SETS[1], "--out", str(out),
        "--api-base", sim.base_url, *FAST,
    )  # fmt: skip
    assert planned.code == 0, planned.err
    rows = ls_rows(capsys, out)
    blocked = next(r for r in rows if r["data_set_id"] == int(DATA_SETS[0]))
    (out / str(blocked["path"])).mkdir(parents=True)  # a directory where a file belongs
    locked_dir = out / DATA_SETS[1]  # its dataset.json and every image below it
    locked_dir.mkdir(parents=True, exist_ok=True)
    locked_dir.chmod(0o555)
    try:
        result = subprocess.run(
            [*NO_OVERRIDE, *mirror_command(sim, out, fast_config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        locked_dir.chmod(0o755)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    after = {r["path"]: r for r in ls_rows(capsys, out)}
    assert after[blocked["path"]]["status"] == "failed"
    assert "Is a directory" in str(after[blocked["path"]]["error"])
    in_locked = [r for p, r in after.items() if p.startswith(DATA_SETS[1] + "/")]
    assert in_locked and all(r["status"] == "failed" for r in in_locked)
    assert all("permission denied" in str(r["error"]) for r in in_locked)
    rest = [r for p, r in after.items() if p != blocked["path"] and r not in in_locked]
    assert rest and all(r["status"] == "done" for r in rest)
    assert all(r["attempts"] == 1 for r in in_locked)  # a disk problem is not retried
    assert '"plan.metadata_not_written"' in result.stderr


async def test_a_file_name_too_long_is_that_files_error_alone(tmp_path: Path) -> None:
    """Record checks keep API names short (tests/test_records.py); should a name still be too
    long for the filesystem, only its file fails."""
    store = LocalStore(tmp_path)
    parts = []
    for path in ("a/ok.jpg", "a/" + "x" * 300 + ".jpg", "b/ok.jpg"):
        async with store.part(path) as part:
            await part.write(b"\xff\xd8 body \xff\xd9")
        parts.append(part)
    first, too_long, last = await store.commit(parts)
    assert isinstance(first, StoredFile) and isinstance(last, StoredFile)
    assert isinstance(too_long, StorageError) and not isinstance(too_long, DiskFullError)
    assert "File name too long" in str(too_long)
    assert (tmp_path / "a/ok.jpg").exists() and (tmp_path / "b/ok.jpg").exists()
