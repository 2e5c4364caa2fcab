"""Friendly selections end to end: the CLI against the simulator over HTTP, outcomes on disk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.simulator import Catalogue, ThreadedSimulator, ontology
from tests.conftest import FAST, run_cli


def plan(capsys: pytest.CaptureFixture[str], sim: ThreadedSimulator, out: Path, *extra: str) -> Any:
    return run_cli(capsys, "plan", "--out", str(out), "--api-base", sim.base_url, *FAST, *extra)


def planned(out: Path) -> set[int]:
    connection = sqlite3.connect(out / "manifest.sqlite")
    try:
        return {int(r[0]) for r in connection.execute("select distinct data_set_id from items")}
    finally:
        connection.close()


def facts(catalogue: Catalogue, record: dict[str, Any]) -> dict[str, Any]:
    """Line names, injection site ids, gene symbols, plane and products of one data set."""
    (specimen,) = catalogue.related_by_name("SectionDataSet", "specimen", record)
    (donor,) = catalogue.related_by_name("Specimen", "donor", specimen)
    injections = catalogue.related_by_name("Specimen", "stereotaxic_injections", specimen)

    def names(model: str, name: str, of: dict[str, Any], key: str = "name") -> set[str]:
        return {str(r[key]) for r in catalogue.related_by_name(model, name, of)}

    return {
        "lines": names("Donor", "transgenic_lines", donor),
        "sites": {int(str(i["primary_injection_structure_id"])) for i in injections},
        "genes": names("SectionDataSet", "genes", record, "acronym"),
        "plane": {1: "coronal", 2: "sagittal"}[int(str(record["plane_of_section_id"]))],
        "products": {int(p) for p in names("SectionDataSet", "products", record, "id")},
        "failed": record["failed"],
    }


def below(acronym: str) -> set[int]:
    structure = ontology.by_acronym(acronym)
    assert structure is not None
    return {structure.id} | {s.id for s in ontology.descendants(structure.id)}


def site(acronym: str) -> int:
    structure = ontology.by_acronym(acronym)
    assert structure is not None
    return structure.id


CASES: dict[str, tuple[list[str], Any]] = {
    "line": (
        ["--transgenic-line", "Sst-IRES-Cre", "--include-failed"],
        lambda f: "Sst-IRES-Cre" in f["lines"],
    ),
    "two_lines_are_or": (
        ["--transgenic-line", "Sst-IRES-Cre", "--transgenic-line", "Cux2-IRES-Cre"],
        lambda f: f["lines"] & {"Sst-IRES-Cre", "Cux2-IRES-Cre"} and not f["failed"],
    ),
    "injection": (
        ["--injection-structure", "VISp"],
        lambda f: site("VISp") in f["sites"] and not f["failed"],
    ),
    "injection_with_descendants": (
        ["--injection-structure", "SSp", "--with-descendants", "--include-failed"],
        lambda f: f["sites"] & below("SSp"),
    ),
    "gene_and_plane_are_and": (
        ["--gene", "Pdyn", "--gene", "Pvalb", "--plane", "sagittal"],
        lambda f: f["genes"] & {"Pdyn", "Pvalb"} and f["plane"] == "sagittal",
    ),
    "product_and_injection_are_and": (
        ["--product", "5", "--injection-structure", "VISp", "--injection-structure", "MOp"],
        lambda f: 5 in f["products"] and f["sites"] & {site("VISp"), site("MOp")},
    ),
    "plane_alone": (["--plane", "coronal"], lambda f: f["plane"] == "coronal" and not f["failed"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_friendly_filters_select_exactly_the_matching_data_sets(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    flags, wanted = CASES[case]
    expected = {
        int(str(r["id"]))
        for r in sim.catalogue.records("SectionDataSet")
        if wanted(facts(sim.catalogue, dict(r)))
    }
    assert expected, case
    out = tmp_path / "m"
    result = plan(capsys, sim, out, *flags)
    assert result.code == 0, result.err
    assert planned(out) == expected
    (event,) = [json.loads(x) for x in result.err.splitlines() if '"selection.rma"' in x]
    assert event["query"].startswith(f"model::SectionDataSet,rma::criteria,{event['criteria']},")


def test_a_filter_without_product_or_with_descendants_shows_its_live_criteria(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = plan(capsys, sim, tmp_path / "m", "--transgenic-line", "Sst-IRES-Cre")
    (event,) = [json.loads(x) for x in result.err.splitlines() if '"selection.rma"' in x]
    assert event["criteria"] == "specimen(donor(transgenic_lines[name$eq'Sst-IRES-Cre']))"
    result = plan(
        capsys, sim, tmp_path / "n", "--injection-structure", "VISp", "--with-descendants"
    )
    (event,) = [json.loads(x) for x in result.err.splitlines() if '"selection.rma"' in x]
    ids = event["criteria"].split("[id$in")[1].removesuffix("]))").split(",")
    assert {int(i) for i in ids} == below("VISp")


def test_config_file_keys_select_like_the_flags_and_flags_win(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "select.toml"
    config.write_text('genes = "Pdyn"\nplanes = "sagittal"\n')
    result = plan(capsys, sim, tmp_path / "a", "--config", str(config))
    assert result.code == 0, result.err
    assert planned(tmp_path / "a") == {69782969}
    result = plan(capsys, sim, tmp_path / "b", "--config", str(config), "--gene", "Calb1")
    assert result.code == 0, result.err
    expected = {
        int(str(r["id"]))
        for r in sim.catalogue.records("SectionDataSet")
        if facts(sim.catalogue, dict(r))["genes"] == {"Calb1"} and r["plane_of_section_id"] == 2
    }
    assert expected and planned(tmp_path / "b") == expected


def test_dataset_json_keeps_what_users_filter_and_label_by(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    result = plan(
        capsys, sim, out, "--dataset", "500000001", "--dataset", "69782969", "--include-failed"
    )
    assert result.code == 0, result.err
    connectivity = json.loads((out / "500000001" / "dataset.json").read_text())
    assert connectivity["labels"] == {
        "transgenic_lines": ["Sst-IRES-Cre"],
        "injection_structures": ["SSp-bfd"],
        "genes": [],
        "plane_of_section": "coronal",
    }
    specimen = connectivity["data_set"]["specimen"]
    assert specimen["donor"]["transgenic_lines"][0]["name"] == "Sst-IRES-Cre"
    (injection,) = specimen["stereotaxic_injections"]
    assert injection["primary_injection_structure"]["structure_id_path"].endswith("/322/329/")
    assert len(injection["structures"]) == 3
    ish = json.loads((out / "69782969" / "dataset.json").read_text())
    assert ish["labels"]["genes"] == ["Pdyn"] and ish["labels"]["plane_of_section"] == "sagittal"
    # Through includes of the queries already sent: one SectionDataSet query, no per-set calls,
    # and one SectionImage query for both data sets' images.
    assert sim.counters.by_route.get("rma", 0) == 1 + 1


NO = "matched nothing: no"
BAD = [
    (["--transgenic-line", "Nope-Cre"], f"--transgenic-line {NO} transgenic line 'Nope-Cre' at B"),
    (
        ["--injection-structure", "VISp", "--injection-structure", "VISq"],
        f"--injection-structure {NO} structure 'VISq' at B",
    ),
    (
        ["--gene", "Pdyn", "--gene", "NoGene", "--gene", "Zzz"],
        f"--gene {NO} gene 'NoGene', 'Zzz' at B",
    ),
    (["--plane", "axial"], "invalid --plane 'axial': expected coronal or sagittal"),
    (["--dataset", "1", "--with-descendants"], "--with-descendants applies to --injection-str"),
    (["--gene", "Pdyn'"], 'invalid --gene "Pdyn\'": quotes, brackets'),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_values_end_in_one_line_naming_what_matched_nothing(
    sim: ThreadedSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    for command in ("plan", "mirror"):
        out = tmp_path / command
        result = run_cli(
            capsys, command, "--out", str(out), "--api-base", sim.base_url, *FAST, *flags
        )
        assert result.code == 2, result.err
        lines = [x for x in result.err.splitlines() if x.startswith("allen-mirror: error")]
        (line,) = lines
        assert line.startswith(f"allen-mirror: error: {message.replace(' at B', ' at ')}")
        assert line.endswith(sim.base_url) or " at " not in message
        assert "Traceback" not in result.err
        assert not list(out.glob("*/dataset.json"))
    assert sim.counters.by_route.get("image", 0) == 0
