"""``--with ontology,annotation,template``: planned once per run, validated, resumable, verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from crawler.ccf import CCF_DATA_SET_ID, check_structure_graph, plan_ccf
from crawler.config import Settings, load_settings
from crawler.errors import ContentError, UsageError
from crawler.plan import DEFAULT_ARCHIVE_BASE, Item, PlanOptions, item_url
from crawler.simulator import ThreadedSimulator
from crawler.simulator.ccf_volumes import ARCHIVE_PREFIX, volume_nrrd
from crawler.simulator.ontology import tree
from tests.conftest import FAST, ls_rows, run_cli

CONNECTIVITY = 100141599
API = "http://api.brain-map.org"


def ccf_items(extras: str, resolution: int = 25, base: str = DEFAULT_ARCHIVE_BASE) -> list[Item]:
    settings = load_settings(
        None, {"extras": extras, "ccf_resolution": resolution, "archive_base": base}, environ={}
    )
    return list(plan_ccf(settings.plan_options()))


def test_ccf_items_are_planned_once_with_stable_keys() -> None:
    items = ccf_items("grid,ontology,annotation,template")
    assert [(i.kind, i.path, i.data_set_id, i.image_id) for i in items] == [
        ("ontology", "ccf/structure_graph_1.json", CCF_DATA_SET_ID, None),
        ("ccf_annotation", "ccf/annotation_25.nrrd", CCF_DATA_SET_ID, None),
        ("ccf_template", "ccf/average_template_25.nrrd", CCF_DATA_SET_ID, None),
    ]
    assert [i.url(API) for i in items] == [
        f"{API}/api/v2/structure_graph_download/1.json",
        f"{DEFAULT_ARCHIVE_BASE}/annotation/ccf_2017/annotation_25.nrrd",
        f"{DEFAULT_ARCHIVE_BASE}/average_template/average_template_25.nrrd",
    ]
    assert [i.ref for i in items] == [i.ref for i in ccf_items("ontology,annotation,template")]
    assert all(i.estimate > 0 for i in items)


@pytest.mark.parametrize(
    ("extras", "resolution", "paths"),
    [
        ("grid,unionizes", 25, []),
        ("annotation", 10, ["ccf/annotation_10.nrrd"]),
        ("template", 100, ["ccf/average_template_100.nrrd"]),
        ("ontology", 50, ["ccf/structure_graph_1.json"]),
    ],
)
def test_what_each_extra_plans(extras: str, resolution: int, paths: list[str]) -> None:
    assert [i.path for i in ccf_items(extras, resolution)] == paths


def test_a_plan_without_ccf_extras_has_none() -> None:
    assert list(plan_ccf(PlanOptions())) == []


@pytest.mark.parametrize(
    ("ref", "url"),
    [
        ("/api/v2/section_image_download/1?x=1", f"{API}/api/v2/section_image_download/1?x=1"),
        ("http://archive.example/a.nrrd", "http://archive.example/a.nrrd"),
        ("https://archive.example/a.nrrd", "https://archive.example/a.nrrd"),
    ],
)  # fmt: skip
def test_item_url(ref: str, url: str) -> None:
    assert item_url(API, ref) == url


def test_ccf_settings() -> None:
    settings = load_settings(
        None, {"archive_base": "http://mirror.example/ccf/", "ccf_resolution": "10"}, environ={}
    )
    assert (settings.archive_base, settings.ccf_resolution) == ("http://mirror.example/ccf", 10)
    defaults = Settings()
    assert (defaults.archive_base, defaults.ccf_resolution) == (DEFAULT_ARCHIVE_BASE, 25)
    with pytest.raises(UsageError, match="ccf-resolution must be one of 10, 25, 50, 100"):
        load_settings(None, {"ccf_resolution": 20}, environ={})
    with pytest.raises(UsageError, match="archive-base must be an http"):
        load_settings(None, {"archive_base": "ftp://x"}, environ={})
    with pytest.raises(UsageError, match="unknown extra 'atlas'"):
        load_settings(None, {"extras": "ontology,atlas"}, environ={})


def _graph(**change: Any) -> dict[str, Any]:
    return {"success": True, "id": 0, "start_row": 0, "num_rows": 1, "total_rows": 1,
            "msg": [tree()], **change}  # fmt: skip


def test_the_structure_graph_is_checked_whole() -> None:
    check_structure_graph(json.dumps(_graph()).encode(), url="u")
    orphan = tree()
    orphan["children"][0]["parent_structure_id"] = 12345
    bad = [
        (b"<html>site unavailable</html>", "malformed JSON"),
        (json.dumps(_graph(msg=[])).encode(), "0 root nodes"),
        (json.dumps(_graph(msg=[tree(), tree()])).encode(), "2 root nodes"),
        (json.dumps(_graph(msg=[orphan])).encode(), "says its parent is 12345"),
        (json.dumps(_graph(msg=[{"id": 997}])).encode(), "no acronym or name"),
        (json.dumps(_graph())[:-40].encode(), "malformed JSON"),
    ]
    for body, reason in bad:
        with pytest.raises(ContentError, match=reason):
            check_structure_graph(body, url="u")
    with pytest.raises(Exception, match="query failed"):
        check_structure_graph(json.dumps({"success": False, "msg": "no"}).encode(), url="u")


def mirror(sim: ThreadedSimulator, out: Path, config: Path, *extra: str) -> list[str]:
    return [
        "mirror", "--dataset", str(CONNECTIVITY), "--sections", "1-1", "--out", str(out),
        "--api-base", sim.base_url, "--archive-base", sim.base_url + ARCHIVE_PREFIX,
        "--config", str(config), "--ccf-resolution", "100", *FAST, *extra,
    ]  # fmt: skip


CCF_FILES = {
    "ccf/structure_graph_1.json": "/api/v2/structure_graph_download/1.json",
    "ccf/annotation_100.nrrd": f"{ARCHIVE_PREFIX}/annotation/ccf_2017/annotation_100.nrrd",
    "ccf/average_template_100.nrrd": f"{ARCHIVE_PREFIX}/average_template/average_template_100.nrrd",
}


def test_ccf_files_are_mirrored_once_validated_resumable_and_verified(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_config: Path
) -> None:
    out = tmp_path / "m"
    args = mirror(sim, out, fast_config, "--with", "ontology,annotation,template", "--retries", "1")
    # A damaged volume (its magic zeroed) is refused and never recorded done.
    sim.set_faults(fault_rate=1.0, fault_kinds={"corrupt_grid"})
    first = run_cli(capsys, *args)
    assert first.code == 1
    rows = {r["path"]: r for r in ls_rows(capsys, out) if r["data_set_id"] == 0}
    for path in ("ccf/annotation_100.nrrd", "ccf/average_template_100.nrrd"):
        assert rows[path]["status"] == "failed" and "NRRD" in str(rows[path]["error"])
        assert not (out / path).exists()
    assert rows["ccf/structure_graph_1.json"]["status"] == "done"
    assert not list(out.rglob("*.part"))

    sim.set_faults(fault_rate=0.0)
    second = run_cli(capsys, *args)
    assert second.code == 0, second.err
    rows = {r["path"]: r for r in ls_rows(capsys, out) if r["data_set_id"] == 0}
    assert set(rows) == set(CCF_FILES)
    for path, served in CCF_FILES.items():
        body = (out / path).read_bytes()
        assert rows[path]["status"] == "done" and rows[path]["url"] == sim.base_url + served
        assert (rows[path]["size"], rows[path]["sha256"]) == (
            len(body),
            hashlib.sha256(body).hexdigest(),
        )
    assert (out / "ccf/annotation_100.nrrd").read_bytes() == volume_nrrd("annotation", 100)
    assert (out / "ccf/average_template_100.nrrd").read_bytes() == volume_nrrd("template", 100)

    # Resumable: a third run (and a second data set) fetches no CCF file again.
    sim.counters.reset()
    third = run_cli(capsys, *args, "--dataset", "126862385")
    assert third.code == 0, third.err
    assert sim.counters.by_route.get("grid", 0) == 0
    assert not [u for u in sim.counters.by_url if "structure_graph" in u]
    assert len([r for r in ls_rows(capsys, out) if r["data_set_id"] == 0]) == 3

    # Verified like every file: a damaged volume is found, and repaired.
    damaged = out / "ccf/annotation_100.nrrd"
    damaged.write_bytes(bytes(len(damaged.read_bytes())))
    verify = ["verify", "--out", str(out), "--api-base", sim.base_url, *FAST]
    found = run_cli(capsys, *verify)
    assert found.code == 1 and "1 corrupt" in found.out
    repaired = run_cli(capsys, *verify, "--repair")
    assert repaired.code == 0, repaired.err
    assert damaged.read_bytes() == volume_nrrd("annotation", 100)


def test_a_bad_structure_graph_is_retried_and_never_kept(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_config: Path
) -> None:
    out = tmp_path / "m"
    graph_url = "/api/v2/structure_graph_download/1.json"
    assert run_cli(capsys, *mirror(sim, out, fast_config)).code == 0
    planned = run_cli(capsys, "plan", *mirror(sim, out, fast_config, "--with", "ontology")[1:])
    assert planned.code == 0, planned.err
    # Only the graph is pending: a worker asks for nothing else, and every answer is an outage.
    worker = ["worker", "--out", str(out), "--api-base", sim.base_url, "--config",
              str(fast_config), "--retries", "2", *FAST]  # fmt: skip
    sim.set_faults(fault_rate=1.0, fault_kinds={"html_outage"})
    sim.counters.reset()
    result = run_cli(capsys, *worker)
    sim.set_faults(fault_rate=0.0)
    assert result.code == 1
    assert sim.counters.requests_total == sim.counters.by_url[graph_url] == 3
    (row,) = [r for r in ls_rows(capsys, out) if r["kind"] == "ontology"]
    assert row["status"] == "failed" and "JSON" in str(row["error"]) and row["attempts"] == 3
    assert not (out / "ccf/structure_graph_1.json").exists() and not list(out.rglob("*.part"))
    # The next mirror gives the failed graph another chance.
    assert run_cli(capsys, *mirror(sim, out, fast_config, "--with", "ontology")).code == 0
    (row,) = [r for r in ls_rows(capsys, out) if r["kind"] == "ontology"]
    body = (out / "ccf/structure_graph_1.json").read_bytes()
    assert row["status"] == "done" and row["sha256"] == hashlib.sha256(body).hexdigest()
    assert json.loads(body)["msg"] == [tree()]
