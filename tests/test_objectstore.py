"""The mirror in object storage, against a real S3 API (moto's server on 127.0.0.1, tests/s3.py):
bytes, metadata and manifest rows; kill -9 and resume; three workers on one bucket; verify,
repair, prune, export; and the mistakes a user can make, each one line and an exit code."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawler.errors import UsageError
from crawler.export.upload import stale
from crawler.lock import OutputLock
from crawler.manifest.models import items
from crawler.objectstore import BucketUrl, ObjectOptions, open_object_store
from crawler.simulator import SimulatorConfig, ThreadedSimulator, expected_bytes, serve_in_thread
from tests.conftest import FAST, image_requests, ls_rows, run_cli, small_catalogue
from tests.fleet import finish, gate, query
from tests.s3 import (
    CREDENTIALS,
    PART_SIZE,
    body,
    moto_server,
    objects,
    open_uploads,
    s3_client,
)

DATA_SET = "100141599"
SMALL_PARTS = ["--storage-option", f"part_size={PART_SIZE}"]


def sqlite_rows(database: Path) -> list[tuple[str, str, str, int | None, str | None]]:
    connection = sqlite3.connect(database, timeout=30)
    try:
        return connection.execute(
            "select url, path, status, size, sha256 from items order by id"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        connection.close()


def assert_bucket_is_exact(
    s3: Any, bucket: str, prefix: str, sim: ThreadedSimulator, rows: list[Any]
) -> None:
    """Every row done, its object the simulator's bytes, with the manifest's sha256 in the
    object's metadata; and no multipart upload left open."""
    assert rows
    for url, path, status, size, sha256 in rows:
        assert status == "done", path
        key = f"{prefix}/{path}"
        data = body(s3, bucket, key)
        assert data == expected_bytes(sim.catalogue, url[len(sim.base_url) :]), path
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256
        assert s3.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == sha256
    assert open_uploads(s3, bucket) == []


def mirror_args(sim: ThreadedSimulator, url: str, database: Path, *extra: str) -> list[str]:
    return [
        "mirror", "--dataset", DATA_SET, "--out", url, "--manifest", f"sqlite:///{database}",
        "--api-base", sim.base_url, *FAST, *extra,
    ]  # fmt: skip


def test_mirror_into_a_bucket_then_resume_costs_no_download(
    sim: ThreadedSimulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "state" / "manifest.sqlite"
    url = f"s3://{bucket}/allen"
    result = run_cli(capsys, *mirror_args(sim, url, database, *SMALL_PARTS))
    assert result.code == 0, result.err
    rows = sqlite_rows(database)
    assert_bucket_is_exact(s3, bucket, "allen", sim, rows)
    sizes = [size or 0 for *_, size, _ in rows]
    assert min(sizes) < PART_SIZE < max(sizes), "both single PUTs and multipart uploads ran"
    keys = objects(s3, bucket)
    assert f"allen/{DATA_SET}/dataset.json" in keys
    assert json.loads(body(s3, bucket, f"allen/{DATA_SET}/dataset.json"))["data_set"]
    [report] = [k for k in keys if k.startswith("allen/.reports/") and k.endswith("-mirror.json")]
    assert json.loads(body(s3, bucket, report))["settings"]["out"] == url
    assert not any(k.endswith(".part") for k in keys)
    assert not (tmp_path / "mirror").exists(), "nothing was written to a local OUT"
    assert (tmp_path / "state" / "manifest.sqlite.lock").exists(), "the lock sits by the manifest"
    shown = run_cli(capsys, "status", "--out", url, "--manifest", f"sqlite:///{database}")
    assert shown.code == 0, shown.err
    assert f"{len(rows)} done" in shown.out and f" in {url}\n" in shown.out, shown.out

    sim.counters.reset()
    again = run_cli(capsys, *mirror_args(sim, url, database, *SMALL_PARTS))
    assert again.code == 0, again.err
    assert image_requests(sim) == 0
    [second] = [k for k in objects(s3, bucket) if k.endswith("-mirror.json") and k != report]
    counts = json.loads(body(s3, bucket, second))["counts"]
    assert counts["already_done"] == len(rows) and counts["downloaded"] == 0
    # The stamp at the head of dataset.json, read back from the bucket (a ranged GET), let
    # the second run skip the unchanged data set without planning or rewriting it.
    stamp_head = body(s3, bucket, f"allen/{DATA_SET}/dataset.json")[:20]
    assert stamp_head.startswith(b'{"fingerprint": "'), stamp_head
    unchanged = [
        event
        for event in map(
            json.loads, filter(lambda line: line.startswith("{"), again.err.split("\n"))
        )
        if event.get("event") == "plan.unchanged"
    ]
    assert unchanged and unchanged[0]["data_sets"] == 1

    # An object that went missing is fetched again on the next run, and only that one.
    s3.delete_object(Bucket=bucket, Key=f"allen/{rows[0][1]}")
    sim.counters.reset()
    third = run_cli(capsys, *mirror_args(sim, url, database, *SMALL_PARTS))
    assert third.code == 0, third.err
    assert image_requests(sim) == 1
    assert_bucket_is_exact(s3, bucket, "allen", sim, sqlite_rows(database))


@pytest.fixture
def trickling_sim() -> Iterator[ThreadedSimulator]:
    """Bodies arrive slowly, so multipart uploads are open when the run is killed."""
    config = SimulatorConfig(latency_ms=50, bytes_per_second=6000)
    with serve_in_thread(small_catalogue(30), config) as handle:
        yield handle


@pytest.mark.slow
def test_kill_9_mid_upload_then_resume_leaves_no_partial_objects_or_uploads(
    trickling_sim: ThreadedSimulator, s3: Any, bucket: str, tmp_path: Path
) -> None:
    sim, database, url = trickling_sim, tmp_path / "manifest.sqlite", f"s3://{bucket}/allen"
    command = [sys.executable, "-m", "crawler", *mirror_args(sim, url, database, *SMALL_PARTS)]
    for _ in range(3):  # the kill must land while an upload is open: an unlucky one is retried
        earlier = objects(s3, bucket, "allen/")  # what the killed attempts before this one left
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not (open_uploads(s3, bucket) and any(r[2] == "done" for r in sqlite_rows(database))):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no multipart upload was seen in flight"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        left = open_uploads(s3, bucket)
        if left:
            break
    assert left, "no kill left a multipart upload open in three tries"
    done = [r for r in sqlite_rows(database) if r[2] == "done"]
    keys = objects(s3, bucket, "allen/")
    for _, path, _, size, sha256 in done:  # done only once the object was complete
        data = body(s3, bucket, f"allen/{path}")
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256
    urls = {f"allen/{path}": url for url, path, *_ in sqlite_rows(database)}
    for key in {upload["Key"] for upload in left}:  # an upload in flight is no object yet
        if key in keys and key[len("allen/") :] not in {r[1] for r in done}:
            # ... unless an earlier attempt, killed between completing the object and
            # recording it, left it whole: then it is exactly the simulator's bytes.
            assert key in earlier, key
            expected = expected_bytes(sim.catalogue, urls[key][len(sim.base_url) :])
            assert body(s3, bucket, key) == expected, key

    final = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    assert_bucket_is_exact(s3, bucket, "allen", sim, sqlite_rows(database))


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgres_write_each_object_once(
    sim: ThreadedSimulator,
    s3: Any,
    bucket: str,
    pg_url: str,
    spawn: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{bucket}/fleet"
    planned = run_cli(
        capsys, "plan", "--dataset", DATA_SET, "--dataset", "126862385", "--out", url,
        "--manifest", pg_url, "--api-base", sim.base_url, *FAST,
    )  # fmt: skip
    assert planned.code == 0, planned.err
    with gate(pg_url, 3):
        fleet = [spawn(sim, url, pg_url, "--concurrency", "2") for _ in range(3)]  # type: ignore[arg-type]
    for process in fleet:
        finish(process)
    rows = query(
        pg_url, select(items.c.url, items.c.path, items.c.status, items.c.size, items.c.sha256)
    )
    assert_bucket_is_exact(s3, bucket, "fleet", sim, rows)
    versions: dict[str, int] = {}
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="fleet/")
    for page in pages:
        for version in page.get("Versions", ()):
            versions[version["Key"]] = versions.get(version["Key"], 0) + 1
    images = {f"fleet/{path}" for _, path, *_ in rows}
    assert images <= set(versions)
    assert all(versions[key] == 1 for key in images), "an object was written twice"
    assert sum(image_urls_fetched(sim).values()) == len(rows)


def image_urls_fetched(sim: ThreadedSimulator) -> dict[str, int]:
    return {u: n for u, n in sim.counters.by_url.items() if "image_download" in u}


def test_verify_finds_changed_and_missing_objects_and_repair_restores_them(
    sim: ThreadedSimulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database, url = tmp_path / "manifest.sqlite", f"s3://{bucket}/v"
    assert run_cli(capsys, *mirror_args(sim, url, database)).code == 0
    rows = sqlite_rows(database)
    changed, missing = (f"v/{r[1]}" for r in rows[:2])
    data = bytearray(body(s3, bucket, changed))
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=changed, Body=bytes(data))
    s3.delete_object(Bucket=bucket, Key=missing)

    args = ["verify", "--out", url, "--manifest", f"sqlite:///{database}", *FAST]
    result = run_cli(capsys, *args)
    assert result.code == 1, result.err
    assert f"verified {len(rows)} file(s): 1 missing, 1 corrupt" in result.out
    repaired = run_cli(capsys, *args, "--repair", "--api-base", sim.base_url)
    assert repaired.code == 0, repaired.err
    assert_bucket_is_exact(s3, bucket, "v", sim, sqlite_rows(database))
    clean = run_cli(capsys, *args)
    assert clean.code == 0 and "0 missing, 0 corrupt" in clean.out


def test_sync_prune_deletes_the_object(
    sim: ThreadedSimulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database, url = tmp_path / "manifest.sqlite", f"s3://{bucket}/p"
    assert run_cli(capsys, *mirror_args(sim, url, database)).code == 0
    manifest = f"sqlite:///{database}"
    victim = ls_rows(capsys, tmp_path, "--manifest", manifest)[0]
    assert f"p/{victim['path']}" in objects(s3, bucket)
    sim.catalogue.remove_section(int(str(victim["image_id"])))
    result = run_cli(
        capsys, "sync", "--dataset", DATA_SET, "--out", url, "--manifest", manifest,
        "--api-base", sim.base_url, "--prune", *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    remaining = objects(s3, bucket, "p/")
    assert f"p/{victim['path']}" not in remaining
    kept = [r for r in sqlite_rows(database) if r[2] == "done"]
    assert kept and all(f"p/{path}" in remaining for _, path, *_ in kept)


def test_export_to_a_bucket_uploads_the_shards(
    sim: ThreadedSimulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m"
    mirrored = run_cli(
        capsys, "mirror", "--dataset", DATA_SET, "--out", str(out), "--api-base", sim.base_url,
        *FAST,
    )  # fmt: skip
    assert mirrored.code == 0, mirrored.err
    local = tmp_path / "export"
    assert run_cli(capsys, "export", "--out", str(out), "--to", str(local)).code == 0
    s3.put_object(Bucket=bucket, Key="ds/train-00099.tar", Body=b"an older, larger export")
    result = run_cli(capsys, "export", "--out", str(out), "--to", f"s3://{bucket}/ds")
    assert result.code == 0, result.err
    uploaded = objects(s3, bucket, "ds/")
    assert "ds/train-00099.tar" not in uploaded, "a stale shard was left"
    tars = sorted(p.name for p in local.glob("*.tar"))
    assert tars and all(f"ds/{name}" in uploaded for name in tars)
    for name in tars:  # tar members carry no timestamps that differ between two exports
        assert body(s3, bucket, f"ds/{name}") == (local / name).read_bytes()
    assert "ds/_stats.json" in uploaded and "ds/index.parquet" in uploaded


# -- what a user can get wrong: one line, a documented exit code -----------------------------


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_bucket_needs_a_manifest(
    sim: ThreadedSimulator, s3_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "mirror", "--dataset", DATA_SET, "--out", "s3://b/allen", "--api-base",
        sim.base_url, *FAST,
    )  # fmt: skip
    assert result.code == 2
    assert "needs --manifest" in one_line_error(result.err)


def test_a_missing_bucket_is_one_line_and_exit_2(
    sim: ThreadedSimulator,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = tmp_path / "manifest.sqlite"
    result = run_cli(capsys, *mirror_args(sim, "s3://no-such-bucket/allen", database))
    assert result.code == 2
    assert one_line_error(result.err) == (
        "allen-mirror: error: s3://no-such-bucket/allen: no such bucket"
    )
    assert not database.exists(), "nothing was recorded"


def test_wrong_credentials_are_one_line_and_exit_2(
    sim: ThreadedSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This server checks signatures after its first request (which creates the bucket).
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="1") as endpoint:
        s3_client(endpoint).create_bucket(Bucket="locked")
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAWRONG"}
        completed = subprocess.run(
            [sys.executable, "-m", "crawler",
             *mirror_args(sim, "s3://locked/allen", tmp_path / "manifest.sqlite")],
            capture_output=True, text=True, timeout=120, env={**os.environ, **env},
        )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    line = one_line_error(completed.stderr)
    assert line.startswith("allen-mirror: error: s3://locked/allen: ")
    assert "AWS_ACCESS_KEY_ID" in line


def test_storage_options_are_checked() -> None:
    options = ObjectOptions.parse(["endpoint_url=http://x:9000", "part-size=6000000"])
    assert options.endpoint_url == "http://x:9000" and options.part_size == 6_000_000
    for bad in ("colour=blue", "part_size=0", "part_size=big", "endpoint_url"):
        with pytest.raises(UsageError, match="--storage-option"):
            ObjectOptions.parse([bad])


def test_bucket_urls_map_paths_to_keys() -> None:
    url = BucketUrl.parse("s3://b/allen/mouse/")
    assert (url.bucket, url.prefix) == ("b", "allen/mouse")
    assert url.key("1/dataset.json") == "allen/mouse/1/dataset.json"
    assert url.path("allen/mouse/1/dataset.json") == "1/dataset.json"
    assert BucketUrl.parse("s3://b").key("x") == "x"


def test_only_export_names_are_stale() -> None:
    keys = ["train-00001.tar", "train-00002.tar", "notes.txt", "7/dataset.json",
            "val/k.ome.zarr/zarr.json"]  # fmt: skip
    assert stale(keys, {"train-00001.tar"}) == ["train-00002.tar", "val/k.ome.zarr/zarr.json"]


# -- the store itself, against the same server -------------------------------------------------


async def test_a_part_given_up_aborts_its_upload_and_the_sweep_spares_our_own(
    s3: Any, bucket: str
) -> None:
    async with open_object_store(f"s3://{bucket}/x", [f"part_size={PART_SIZE}"]) as store:
        with pytest.raises(RuntimeError):
            async with store.part("a/given-up.jpg") as part:
                await part.write(b"\x00" * (PART_SIZE + 10))  # a multipart upload starts
                assert len(open_uploads(s3, bucket)) == 1
                raise RuntimeError("the body failed its check")
        assert open_uploads(s3, bucket) == [], "the upload was aborted with the part"

        foreign = s3.create_multipart_upload(Bucket=bucket, Key="x/a/killed.jpg")["UploadId"]
        elsewhere = s3.create_multipart_upload(Bucket=bucket, Key="y/other-prefix.jpg")
        async with store.part("a/ours.jpg") as ours:
            await ours.write(b"\x01" * (PART_SIZE + 10))
            swept = await store.sweep(await store.clock() + 5)
            assert swept == 1
            left = {u["UploadId"] for u in open_uploads(s3, bucket)}
            assert foreign not in left, "a killed process's upload is aborted"
            assert elsewhere["UploadId"] in left, "nothing outside the prefix is touched"
            [stored] = await store.commit([ours])
        assert not isinstance(stored, Exception) and stored.size == PART_SIZE + 10
        data = body(s3, bucket, "x/a/ours.jpg")
        assert data == b"\x01" * (PART_SIZE + 10)
        head = s3.head_object(Bucket=bucket, Key="x/a/ours.jpg")
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_sizes_list_a_crowded_directory_and_head_the_rest(s3: Any, bucket: str) -> None:
    crowded = [f"1/section/ds4/{n:04d}.jpg" for n in range(30)]
    for n, path in enumerate(crowded):
        s3.put_object(Bucket=bucket, Key=f"m/{path}", Body=b"x" * n)
    s3.put_object(Bucket=bucket, Key="m/2/dataset.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="other/1/section/ds4/0031.jpg", Body=b"outside")
    asked = [*crowded, "1/section/ds4/0031.jpg", "2/dataset.json", "3/missing.jpg"]
    async with open_object_store(f"s3://{bucket}/m", []) as store:
        sizes = await store.sizes(asked)
    assert sizes == [*range(30), None, 2, None]


def test_a_second_run_on_the_same_sqlite_manifest_is_refused(
    sim: ThreadedSimulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "manifest.sqlite"
    holder = OutputLock(tmp_path, "mirror", name="manifest.sqlite.lock")
    holder.acquire()  # as a running mirror holds it: beside the manifest, there being no OUT
    try:
        result = run_cli(capsys, *mirror_args(sim, f"s3://{bucket}/allen", database))
    finally:
        holder.release()
    assert result.code == 3
    line = one_line_error(result.err)
    assert (
        f"s3://{bucket}/allen (manifest {database}) is in use by another allen-mirror run" in line
    )


@pytest.mark.parametrize("out", ["gs://bucket/allen", "s3:///allen"])
def test_other_object_urls_are_refused(out: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "ls", "--out", out, "--manifest", "sqlite:///x.sqlite")
    assert result.code == 2
    assert out in one_line_error(result.err)


@pytest.mark.parametrize("answers", [False, True], ids=["refused", "silent"])
def test_an_endpoint_that_refuses_or_never_answers_fails_fast_in_one_line(
    sim: ThreadedSimulator, tmp_path: Path, answers: bool
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if answers:
            listener.listen()  # accepts connections, never says a word
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        if not answers:
            listener.close()  # nothing listens there: connections are refused
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "crawler",
             *mirror_args(sim, "s3://any/allen", tmp_path / "manifest.sqlite")],
            capture_output=True, text=True, timeout=120, env={**os.environ, **env},
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert completed.returncode == 2, completed.stderr
    line = one_line_error(completed.stderr)
    assert line.startswith("allen-mirror: error: "), line
    assert elapsed < 25, f"took {elapsed:.1f} s to give up"
    assert image_requests(sim) == 0
