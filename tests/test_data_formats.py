"""Loaders of every referring-segmentation format: same canonical rows from each, problems reported.

Fixtures are written in each format by tests/fixtures_data.py; expected masks there are numpy slices
drawn independently of the code under test.
"""

import json
import os
import pickle
import sys
import types

import fixtures_data as fx
import numpy as np
import pytest

from modeling_asda.data import masks as data_masks
from modeling_asda.data.convert import normalize_split
from modeling_asda.data.hub_formats import jxu_split_names
from modeling_asda.data.loading import detect_format, load_referring_dataset
from modeling_asda.data.masks import SegmentationError, decode_segmentation


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    refer_root, image_root = fx.write_refer(str(root / "refer"))
    jxu_coco = fx.write_jxu(str(root / "jxu_coco"), "coco")
    jxu_flat = fx.write_jxu(str(root / "jxu_flat"), "flat")
    return {
        "refer": (refer_root, image_root),
        "lmms": fx.write_lmms(str(root / "lmms")),
        "jxu_coco": jxu_coco,
        "jxu_flat": jxu_flat,
        "prepared_disk": fx.write_prepared(str(root / "prepared_disk")),
        "prepared_parquet": fx.write_prepared(str(root / "prepared_parquet"), "parquet"),
    }


def load(path, tmp_path, **kwargs):
    return load_referring_dataset(path, cache_dir=str(tmp_path / "cache"), return_report=True, **kwargs)


# --- each format gives the expected rows ----------------------------------------------------------


def test_refer_layout(formats, tmp_path):
    root, image_root = formats["refer"]
    dataset, report = load(root, tmp_path, dataset_config="refcoco", split_by="unc", image_root=image_root)
    fx.assert_rows_match(dataset, fx.expected_rows(), source="refer")
    assert list(dataset) == ["train", "val", "testA", "testB"]
    assert len(report) == 0


def test_refer_pickle_is_python2_style(formats):
    # The fixture is what Python 2 writes: its byte strings cannot be read with Python 3's defaults,
    # and the loader still got "café" right above.
    path = os.path.join(formats["refer"][0], "refcoco", "refs(unc).p")
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02"
        f.seek(0)
        with pytest.raises(UnicodeDecodeError):
            pickle.load(f)


def test_refer_image_root_is_found_in_the_refer_layout(formats, tmp_path):
    dataset, _ = load(formats["refer"][0], tmp_path, dataset_config="refcoco", splits=["val"])
    assert list(dataset) == ["val"] and len(dataset["val"]) == 3


def _lmms_expected():
    expected = {}
    for ref_ids in fx.LMMS_SPLITS.values():
        rows = fx.expected_rows(ref_ids)
        for obj in (o for o in fx.OBJECTS if o["ref_id"] in ref_ids):
            for k, (sent_id, _, _) in enumerate(obj["sentences"]):
                row = dict(rows[f"{obj['ref_id']}_{sent_id}"], ref_id=-1, category_id=-1, sent_id=k)
                expected[f"{obj['ann_id']}_{k}"] = row
    return expected


def test_lmms_lab_parquet(formats, tmp_path):
    dataset, report = load(formats["lmms"], tmp_path)
    fx.assert_rows_match(dataset, _lmms_expected(), source="lmms-lab")
    assert list(dataset) == ["val", "testA"]
    assert len(report) == 0


@pytest.mark.parametrize("layout", ["jxu_coco", "jxu_flat"])
def test_jxu124_parquet(formats, tmp_path, layout):
    folder, image_root = formats[layout]
    dataset, report = load(folder, tmp_path, image_root=image_root)
    # Hub split names train/validation/test/testB become train/val/testA/testB; bbox xyxy -> xywh.
    fx.assert_rows_match(dataset, fx.expected_rows(), source="jxu124")
    assert len(report) == 0


def test_jxu124_needs_image_root(formats, tmp_path):
    with pytest.raises(ValueError, match="image_root"):
        load(formats["jxu_coco"][0], tmp_path)


@pytest.mark.parametrize("kind", ["prepared_disk", "prepared_parquet"])
def test_prepared_form(formats, tmp_path, kind):
    dataset, report = load(formats[kind], tmp_path)
    fx.assert_rows_match(dataset, fx.expected_rows(), source="refer")
    assert len(report) == 0


def test_formats_agree_row_for_row(formats, tmp_path):
    root, image_root = formats["refer"]
    refer, _ = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    jxu, _ = load(formats["jxu_flat"][0], tmp_path, image_root=formats["jxu_flat"][1])
    prepared, _ = load(formats["prepared_disk"], tmp_path)
    for split in refer:
        a, b, c = (sorted(d[split], key=lambda r: r["sample_id"]) for d in (refer, jxu, prepared))
        for ra, rb, rc in zip(a, b, c, strict=True):
            for field in ("sample_id", "ref_id", "ann_id", "sent_id", "image_id", "sentence", "bbox", "width"):
                assert ra[field] == rb[field] == rc[field]
            assert np.array_equal(np.asarray(ra["mask"]), np.asarray(rb["mask"]))
            assert np.array_equal(np.asarray(ra["mask"]), np.asarray(rc["mask"]))


# --- detection, hub, synthetic --------------------------------------------------------------------


def test_detect_format(formats, tmp_path):
    assert detect_format(formats["refer"][0]).kind == "refer"
    assert detect_format(os.path.join(formats["refer"][0], "refcoco")).kind == "refer"
    assert detect_format(os.path.join(formats["refer"][0], "refcoco", "refs(unc).p")).kind == "refer"
    assert detect_format(formats["lmms"]).kind == "lmms-lab"
    assert detect_format(formats["jxu_coco"][0]).kind == "jxu124"
    assert detect_format(formats["prepared_disk"]).kind == "prepared"
    assert detect_format(formats["prepared_parquet"]).kind == "prepared"

    unknown = tmp_path / "my_data"
    unknown.mkdir()
    (unknown / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=f"{unknown}.*notes.txt"):
        load_referring_dataset(str(unknown))
    with pytest.raises(FileNotFoundError, match="no/such/folder"):
        load_referring_dataset("./no/such/folder")


def test_unrecognised_parquet_names_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"text": ["a"], "label": [1]}), path)
    with pytest.raises(ValueError, match=f"{path}.*text"):
        detect_format(str(tmp_path))


def test_parquet_configs_in_several_folders_need_dataset_config(tmp_path):
    for config in ("refcoco", "refcoco+"):
        fx.write_prepared(str(tmp_path / "hub" / config), "parquet")
    with pytest.raises(ValueError, match=r"several folders \['refcoco', 'refcoco\+'\].*dataset_config"):
        detect_format(str(tmp_path / "hub"))
    dataset, _ = load(str(tmp_path / "hub"), tmp_path, dataset_config="refcoco+")
    fx.assert_rows_match(dataset, fx.expected_rows())


def test_refer_asks_for_missing_choices(formats, tmp_path):
    root, image_root = formats["refer"]
    fx.write_refer(str(tmp_path / "two"), dataset="refcoco+")
    fx.write_refer(str(tmp_path / "two"), dataset="refcocog", split_by="umd")
    with pytest.raises(ValueError, match="dataset_config"):
        load(str(tmp_path / "two"), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"refs\(google\).p.*'umd'"):
        load(str(tmp_path / "two"), tmp_path, dataset_config="refcocog", split_by="google")


def test_hub_id_is_downloaded_with_huggingface_hub(formats, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return formats["lmms"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    dataset, _ = load("lmms-lab/RefCOCO", tmp_path, splits=["testA"])
    assert calls[0]["repo_id"] == "lmms-lab/RefCOCO" and calls[0]["repo_type"] == "dataset"
    assert list(dataset) == ["testA"] and dataset["testA"][0]["sentence"] == "the l shaped café sign"


def test_synthetic_dispatch(monkeypatch):
    received = {}
    fake = types.ModuleType("modeling_asda.data.synthetic")
    fake.build_synthetic_dataset = lambda **kwargs: received.update(kwargs) or "synthetic data"
    monkeypatch.setitem(sys.modules, "modeling_asda.data.synthetic", fake)
    assert load_referring_dataset("synthetic", num_samples=7, seed=3) == "synthetic data"
    assert received == {"num_samples": 7, "seed": 3}
    with pytest.raises(TypeError, match="num_samples"):
        load_referring_dataset("/somewhere", num_samples=7)


# --- splits ---------------------------------------------------------------------------------------


def test_split_name_normalisation(formats, tmp_path):
    assert [normalize_split(s) for s in ("validation", "VAL", "testa", "TestB", "test", "training")] == [
        "val",
        "val",
        "testA",
        "testB",
        "test",
        "train",
    ]
    with pytest.raises(ValueError, match="'minival'.*somewhere"):
        normalize_split("minival", where="somewhere")
    # jxu124's "test" is testA for refcoco/refcoco+ (which have testB), test for refcocog.
    assert jxu_split_names(["train", "validation", "test", "testB"], "x") == {
        "train": "train",
        "validation": "val",
        "test": "testA",
        "testB": "testB",
    }
    assert jxu_split_names(["train", "validation", "test"], "x")["test"] == "test"
    folder, image_root = formats["jxu_flat"]
    dataset, _ = load(folder, tmp_path, image_root=image_root, splits=["validation", "testa"])
    assert list(dataset) == ["val", "testA"]
    with pytest.raises(ValueError, match=r"\['test'\] not in"):
        load(folder, tmp_path, image_root=image_root, splits=["test"])


# --- masks ----------------------------------------------------------------------------------------

BACKENDS = [False] + ([True] if data_masks.coco_mask is not None else [])


@pytest.mark.parametrize("use_pycocotools", BACKENDS)
def test_overlapping_polygons_are_a_union(use_pycocotools):
    polygons = [[2, 2, 14, 2, 14, 12, 2, 12], [8, 6, 20, 6, 20, 18, 8, 18]]
    mask = decode_segmentation(polygons, 30, 36, use_pycocotools=use_pycocotools)
    assert mask.dtype == np.uint8 and mask.max() == 1
    # 10x12 + 12x12 - the 6x6 overlap, not 120 + 144 as a sum of parts would count.
    assert mask.sum() == 120 + 144 - 36
    assert mask[8, 10] == 1  # inside both


@pytest.mark.parametrize("use_pycocotools", BACKENDS)
def test_rle_segmentations(use_pycocotools):
    coco = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = (rng.random((13, 17)) < 0.4).astype(np.uint8)
        compressed = coco.encode(np.asfortranarray(mask))
        rle = {"size": [13, 17], "counts": compressed["counts"].decode("ascii")}
        np.testing.assert_array_equal(decode_segmentation(rle, 13, 17, use_pycocotools=use_pycocotools), mask)
    uncompressed = next(o for o in fx.OBJECTS if o["ref_id"] == 4)
    got = decode_segmentation(uncompressed["segmentation"], 30, 36, use_pycocotools=use_pycocotools)
    np.testing.assert_array_equal(got, uncompressed["mask"])


def test_pil_fallback_agrees_with_pycocotools():
    pytest.importorskip("pycocotools")
    # Integer, axis-aligned polygons: identical.
    for obj in (o for o in fx.OBJECTS if isinstance(o["segmentation"], list)):
        width, height = fx.IMAGES[obj["image_id"]]
        pil = decode_segmentation(obj["segmentation"], height, width, use_pycocotools=False)
        coco = decode_segmentation(obj["segmentation"], height, width, use_pycocotools=True)
        np.testing.assert_array_equal(pil, coco)
        np.testing.assert_array_equal(pil, obj["mask"])
    # General polygons: the same object up to boundary pixels.
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(10):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 8))
        radii = rng.uniform(10, 25, 8)
        poly = np.stack([40 + radii * np.cos(angles), 30 + radii * np.sin(angles)], 1).ravel().tolist()
        pil = decode_segmentation([poly], 60, 80, use_pycocotools=False).astype(bool)
        coco = decode_segmentation([poly], 60, 80, use_pycocotools=True).astype(bool)
        ious.append((pil & coco).sum() / (pil | coco).sum())
    assert min(ious) > 0.9 and np.mean(ious) > 0.95


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ([], "expected polygons or RLE"),
        ([[1, 2, 3]], "even number"),
        ([["a", "b", "c", "d", "e", "f"]], "list of numbers"),
        ([[1, 2, 3, 4]], "at least 3 points"),
        ([[0, 0, float("nan"), 0, 5, 5]], "non-finite"),
        ({"size": [3, 3], "counts": [9]}, "differs from the image size"),
        ({"size": [30, 36], "counts": [5, 5]}, "sum to 1080"),
        ({"size": [30, 36], "counts": "\x01\x02"}, "compressed RLE|invalid character"),
    ],
)
def test_bad_segmentations_raise_clear_errors(segmentation, message):
    for backend in BACKENDS:
        with pytest.raises(SegmentationError, match=message):
            decode_segmentation(segmentation, 30, 36, use_pycocotools=backend)


# --- problems -------------------------------------------------------------------------------------


def test_problems_are_dropped_reported_and_counted(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"), with_problems=True)
    dataset, report = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    kept = fx.expected_rows()
    sample_ids = {row["sample_id"] for split in dataset.values() for row in split}
    assert sample_ids == set(kept) | {"10_102"}  # the problem-free sentence of ref 10 stays

    expected_counts = {reason: len(ids) for reason, ids in fx.PROBLEMS.values()}
    assert report.counts() == expected_counts
    summary = report.summary()
    for ref_id, (reason, ids) in fx.PROBLEMS.items():
        entry = summary["by_reason"][reason]
        assert ref_id in entry["ref_ids"] and entry["sample_ids"] == ids
    assert summary["num_dropped_rows"] == sum(expected_counts.values())
    details = {p["sample_id"]: p["detail"] for p in report}
    assert "COCO_train2014_000000000103.jpg" in details["6_61"]  # names the missing file
    assert "50x50" in details["12_121"]

    report.to_json(tmp_path / "problems.json")
    with open(tmp_path / "problems.json") as f:
        assert json.load(f)["by_reason"]["corrupt_image"]["sample_ids"] == ["7_71", "7_72"]

    # A second load comes from the cache and must carry the same report.
    _, again = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    assert again.problems == report.problems
    # rebuild converts again, with the same result.
    _, rebuilt = load(root, tmp_path, dataset_config="refcoco", image_root=image_root, rebuild=True)
    assert rebuilt.problems == report.problems


def test_problems_are_logged(tmp_path, caplog):
    root, image_root = fx.write_refer(str(tmp_path / "refer"), with_problems=True)
    load_referring_dataset(root, "refcoco", image_root=image_root, cache_dir=str(tmp_path / "cache"), splits=["val"])
    assert "empty_mask: 1 row(s); ref ids: 8; sample ids: 8_81" in caplog.text


def test_jxu124_missing_image_and_bad_annotation(tmp_path):
    import pyarrow.parquet as pq

    folder, image_root = fx.write_jxu(str(tmp_path / "jxu"), "flat")
    os.remove(os.path.join(image_root, fx.coco_name(102)))
    path = os.path.join(folder, "data", "validation-00000-of-00001.parquet")
    table = pq.read_table(path).to_pylist()
    table[0]["raw_anns"] = "{not json"  # ref 1
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), path)
    dataset, report = load(folder, tmp_path, image_root=image_root)
    assert report.counts() == {"missing_image": 4, "bad_segmentation": 2}
    assert report.summary()["by_reason"]["missing_image"]["ref_ids"] == [3, 5, 4]
    assert report.summary()["by_reason"]["bad_segmentation"]["sample_ids"] == ["1_11", "1_12"]
    assert {row["sample_id"] for split in dataset.values() for row in split} == {"2_21"}


def test_lmms_lab_corrupt_embedded_image(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = fx.write_lmms(str(tmp_path / "lmms"))
    path = os.path.join(folder, "data", "val-00000-of-00001.parquet")
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[1]["image"] = {"bytes": b"not an image", "path": None}  # ann 1005
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    dataset, report = load(folder, tmp_path)
    assert report.counts() == {"corrupt_image": 1}
    problem = report.problems[0]
    assert problem["sample_id"] == "1005_0" and problem["ann_id"] == 1005 and problem["ref_id"] is None
    assert len(dataset["val"]) == 2


@pytest.mark.slow
def test_num_proc_gives_the_same_rows_and_report(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"), with_problems=True)
    one, report_one = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    two, report_two = load(root, tmp_path, dataset_config="refcoco", image_root=image_root, num_proc=2)
    for split in one:
        assert one[split]["sample_id"] == two[split]["sample_id"]
    assert sorted(map(str, report_one.problems)) == sorted(map(str, report_two.problems))
