"""The gRefCOCO layout: no-target rows, multi-target unions, .json and .p refs, broken refs reported by id."""

import fixtures_grefcoco as gfx
import numpy as np
import pytest

from modeling_asda.data.loading import detect_format, load_referring_dataset


def load(root, tmp_path, **kwargs):
    return load_referring_dataset(
        root,
        dataset_config="grefcoco",
        split_by="unc",
        cache_dir=str(tmp_path / "cache"),
        return_report=True,
        **kwargs,
    )


@pytest.mark.parametrize("refs_format", ["json", "p"])
def test_grefcoco_rows(tmp_path, refs_format):
    root = gfx.write_grefcoco(str(tmp_path / "g"), refs_format)
    assert detect_format(root, "grefcoco").kind == "grefcoco"
    dataset, report = load(root, tmp_path)
    rows = {row["sample_id"]: row for split in dataset.values() for row in split}
    assert sorted(rows) == sorted(gfx.EXPECTED)
    for sample_id, (split, mask, no_target, num_targets) in gfx.EXPECTED.items():
        row = rows[sample_id]
        assert row["split"] == split, sample_id
        np.testing.assert_array_equal(np.asarray(row["mask"]) > 0, mask.astype(bool), err_msg=sample_id)
        assert (row["no_target"], row["num_targets"]) == (no_target, num_targets), sample_id
        assert row["source"] == "grefcoco"
    # A no-target row has no box and no annotation; a union's box is its mask's, not the first object's.
    assert rows["22_220"]["bbox"] == [0, 0, 0, 0] and rows["22_220"]["ann_id"] == -1
    assert rows["21_210"]["bbox"] == [2, 4, 33, 16] and rows["21_210"]["ann_id"] == 2001
    # Broken refs are dropped and reported by ref id, with the reason.
    reported = {p["ref_id"]: p["reason"] for p in report}
    assert reported == gfx.REPORTED
    assert "ref ids: 26" in report.format()


def test_grefcoco_without_dataset_config_and_by_file(tmp_path):
    root = gfx.write_grefcoco(str(tmp_path / "g"))
    # The ROOT alone, and the grefs file itself, are recognised too.
    dataset = load_referring_dataset(root, cache_dir=str(tmp_path / "c1"), splits=["val"])
    assert len(dataset["val"]) == 2 and all(dataset["val"]["no_target"])
    grefs = str(tmp_path / "g" / "grefcoco" / "grefs(unc).json")
    assert detect_format(grefs).kind == "grefcoco"


def test_grefcoco_clear_errors(tmp_path):
    root = gfx.write_grefcoco(str(tmp_path / "g"))
    with pytest.raises(FileNotFoundError, match=r"grefs\(umd\)"):
        load_referring_dataset(root, dataset_config="grefcoco", split_by="umd", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"Split\(s\) \['test'\] not in"):
        load(root, tmp_path, splits=["test"])


def test_prepare_refcoco_prepares_grefcoco_and_the_prepared_form_keeps_the_targets(tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys

    root = gfx.write_grefcoco(str(tmp_path / "g"), "p")
    out = tmp_path / "prepared"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "prepare_refcoco.py")
    command = [
        sys.executable, script, "--dataset_name", root, "--dataset_config", "grefcoco", "--split_by", "unc",
        "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "missing_image: 1 row(s); ref ids: 26" in result.stdout
        and "bad_target: 1 row(s); ref ids: 27" in result.stdout
    )
    problems = json.loads((out / "problems.json").read_text())
    assert problems["rows_per_split"] == {"train": 4, "val": 2, "testA": 1, "testB": 1}
    shutil.rmtree(os.path.join(root, "images"))  # the prepared form carries its images
    for path in (str(out), str(out / "parquet")):
        prepared = load_referring_dataset(path, cache_dir=str(tmp_path / "c2"))
        rows = {row["sample_id"]: row for split in prepared.values() for row in split}
        assert sorted(rows) == sorted(gfx.EXPECTED)
        for sample_id, (_, mask, no_target, num_targets) in gfx.EXPECTED.items():
            assert (rows[sample_id]["no_target"], rows[sample_id]["num_targets"]) == (no_target, num_targets)
            np.testing.assert_array_equal(np.asarray(rows[sample_id]["mask"]) > 0, mask.astype(bool))
