"""``export --labels`` and the one-line errors of ``export``."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import nrrd
import numpy as np
import pytest

from crawler.export.labels import finest_annotation, pixel_centres
from crawler.reader import open_mirror
from tests.conftest import run_cli
from tests.mirrors import CONNECTIVITY, ISH, build_mirror

RESOLUTION = 10.0  # µm per voxel of the synthetic annotation
SHAPE = (150, 80, 40)  # x (posterior), y (inferior), z (right): z ends at 400 µm
# Image pixels -> section volume: 0.35 µm per full-resolution pixel, no rotation.
ALIGNMENT2D = {"tsv_00": 0.35, "tsv_01": 0.0, "tsv_02": 0.0, "tsv_03": 0.35, "tsv_04": 0.0,
               "tsv_05": 0.0, "tvs_00": 1 / 0.35, "tvs_01": 0.0, "tvs_02": 0.0,
               "tvs_03": 1 / 0.35, "tvs_04": 0.0, "tvs_05": 0.0}  # fmt: skip
# Section volume (u, v, depth) -> reference: x = depth + 1000, y = v + 500, z = u + 200.
TVR = [[0, 0, 1, 1000], [0, 1, 0, 500], [1, 0, 0, 200]]
TRV = [[0, 0, 1, -200], [0, 1, 0, -500], [1, 0, 0, -1000]]
LAYOUT = (("00", "01", "02", "09"), ("03", "04", "05", "10"), ("06", "07", "08", "11"))


def alignment3d() -> dict[str, float]:
    fields: dict[str, float] = {}
    for prefix, matrix in (("tvr", TVR), ("trv", TRV)):
        for row, suffixes in zip(matrix, LAYOUT, strict=True):
            fields.update({f"{prefix}_{s}": float(v) for s, v in zip(suffixes, row, strict=True)})
    return fields


def voxel_value(i: np.ndarray, j: np.ndarray, k: np.ndarray) -> np.ndarray:
    return (1 + i * 10000 + j * 100 + k).astype(np.uint32)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test mirror with alignments for the connectivity data set (not the ISH one) and a
    synthetic CCF: an annotation whose voxel (i, j, k) holds 1 + 10000 i + 100 j + k."""
    out = build_mirror(tmp_path_factory.mktemp("labelled") / "out")
    path = out / str(CONNECTIVITY) / "dataset.json"
    document = json.loads(path.read_text())
    document["data_set"]["alignment3d"] = alignment3d()
    for image in document["section_images"]:
        image["alignment2d"] = ALIGNMENT2D
    path.write_text(json.dumps(document))
    ish = out / str(ISH) / "dataset.json"  # mirrored with alignments: take them away
    document = json.loads(ish.read_text())
    document["data_set"]["alignment3d"] = None
    for image in document["section_images"]:
        image["alignment2d"] = None
    ish.write_text(json.dumps(document))
    ccf = out / "ccf"
    ccf.mkdir()
    i, j, k = np.indices(SHAPE)
    nrrd.write(str(ccf / "annotation_10.nrrd"), voxel_value(i, j, k),
               {"spacings": [RESOLUTION] * 3})  # fmt: skip
    nrrd.write(str(ccf / "annotation_100.nrrd"), np.zeros((2, 2, 2), np.uint32),
               {"spacings": [100.0] * 3})  # fmt: skip
    root = {"id": 997, "acronym": "root", "name": "root", "parent_structure_id": None,
            "children": [{"id": 8, "acronym": "grey", "name": "Basic cell groups",
                          "parent_structure_id": 997, "children": []}]}  # fmt: skip
    (ccf / "structure_graph_1.json").write_text(json.dumps({"success": True, "msg": [root]}))
    return out


def expected_labels(tier: int, width: int, height: int, section_number: int) -> np.ndarray:
    """What the service's arithmetic gives, written out for this plain geometry."""
    u = 0.35 * pixel_centres(tier, width)[None, :] + 200.0  # reference z
    v = 0.35 * pixel_centres(tier, height)[:, None] + 500.0  # reference y
    x = section_number * 50.0 + 1000.0  # the data set's sections are 50 µm thick
    i, j, k = np.floor(x / RESOLUTION), np.floor(v / RESOLUTION), np.floor(u / RESOLUTION)
    i, j, k = np.broadcast_arrays(np.full_like(u * v, i), j + 0 * u, k + 0 * v)
    inside = k < SHAPE[2]
    return np.where(inside, voxel_value(i, j, np.minimum(k, SHAPE[2] - 1)), 0).astype(np.uint32)


def test_pixel_centres_and_finest_annotation(labelled: Path) -> None:
    assert pixel_centres(4, 3).tolist() == [8.0, 24.0, 40.0]
    assert pixel_centres(0, 2, 5).tolist() == [5.5, 6.5]
    assert finest_annotation(labelled / "ccf") == labelled / "ccf" / "annotation_10.nrrd"


def test_webdataset_labels_follow_the_alignment(
    capsys: pytest.CaptureFixture[str], labelled: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "wds"
    result = run_cli(capsys, "export", "--out", str(labelled), "--to", str(dest), "--labels",
                     "--val-fraction", "0", "--no-progress")  # fmt: skip
    assert result.code == 0, result.err
    stats = json.loads((dest / "_stats.json").read_text())
    assert stats["samples"]["train"] == 7  # the connectivity data set's images
    assert stats["skipped"]["samples"] == {"no_alignment_for_labels": 7}  # the ISH ones
    structures = json.loads((dest / "structures.json").read_text())
    assert [s["acronym"] for s in structures] == ["grey", "root"]
    with tarfile.open(dest / "train-00000.tar") as tar:
        names = tar.getnames()
        assert names[:4] == [names[0]] + [names[0].replace(".jpg", e) for e in
                             (".projection.jpg", ".json", ".labels.npy")]  # fmt: skip
        checked = 0
        for name in names:
            if not name.endswith(".labels.npy"):
                continue
            key = name.split(".")[0]
            meta = json.load(tar.extractfile(f"{key}.json"))  # type: ignore[arg-type]
            labels = np.load(io.BytesIO(tar.extractfile(name).read()))  # type: ignore[union-attr]
            assert labels.dtype == np.uint32
            assert labels.shape == (meta["height"], meta["width"])
            want = expected_labels(4, meta["width"], meta["height"], meta["section_number"])
            assert (labels == want).all()
            assert (labels == 0).any() and (labels != 0).any()
            assert meta["alignment2d"] == ALIGNMENT2D and meta["alignment3d"] == alignment3d()
            checked += 1
    assert checked == 7


def test_ome_zarr_labels_image(
    capsys: pytest.CaptureFixture[str], labelled: Path, tmp_path: Path
) -> None:
    import zarr

    dest = tmp_path / "zarr"
    result = run_cli(capsys, "export", "--out", str(labelled), "--to", str(dest), "--labels",
                     "--format", "ome-zarr", "--dataset", str(CONNECTIVITY), "--sections", "1",
                     "--tier", "2", "--val-fraction", "0", "--no-progress")  # fmt: skip
    assert result.code == 0, result.err
    with open_mirror(labelled) as mirror:
        (sample,) = mirror.samples(data_sets=[CONNECTIVITY], sections=(1, 1), tiers=[2])
    group = zarr.open_group(str(dest / "train" / f"{sample.key}.ome.zarr"), mode="r")
    assert group["labels"].attrs["labels"] == ["structures"]
    level0 = np.asarray(group["labels/structures/0"])[0]
    assert (level0 == expected_labels(2, sample.width, sample.height, 1)).all()
    assert (np.asarray(group["labels/structures/1"])[0] == level0[::2, ::2]).all()


# -- one-line errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-fraction", "1.5"], "invalid --val-fraction 1.5"),
        (["--val-fraction", "0.6", "--test-fraction", "0.6"], "add up to more than 1"),
        (["--kinds", "section,nissl"], "unknown kind 'nissl'"),
        (["--format", "tfrecord"], "unknown format 'tfrecord'"),
        (["--shard-size", "0"], "invalid --shard-size 0"),
        (["--labels"], "mirror it with: allen-mirror mirror"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.sqlite").touch()  # the manifest is checked after the options
    result = run_cli(capsys, "export", "--out", str(out), "--to", str(tmp_path / "d"), *extra)
    assert result.code == 2, result.err
    assert result.err.startswith("allen-mirror: error: ") and result.err.count("\n") == 1
    assert message in result.err
    if "--labels" in extra:
        assert "--with annotation,ontology" in result.err


def test_missing_manifest_unwritable_dest_and_missing_extra(
    capsys: pytest.CaptureFixture[str],
    labelled: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_cli(capsys, "export", "--out", str(tmp_path / "none"), "--to", str(tmp_path))
    assert result.code == 2 and "no manifest" in result.err and result.err.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(capsys, "export", "--out", str(labelled), "--to", str(blocker / "d"))
    assert result.code == 2 and "cannot write to" in result.err and result.err.count("\n") == 1
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    result = run_cli(capsys, "export", "--out", str(labelled), "--to", str(tmp_path / "d"))
    assert result.code == 2 and "allen-mirror[export]" in result.err


def test_ish_kinds_only(capsys: pytest.CaptureFixture[str], labelled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "e"
    result = run_cli(capsys, "export", "--out", str(labelled), "--to", str(dest), "--kinds",
                     "expression", "--dataset", str(ISH), "--val-fraction", "0")  # fmt: skip
    assert result.code == 0, result.err
    with tarfile.open(tmp_path / "e" / "train-00000.tar") as tar:
        assert {n.split(".", 1)[1] for n in tar.getnames()} == {"expression.jpg", "json"}
