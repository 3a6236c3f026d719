"""scripts/prepare_refcoco.py end to end: REFER files -> save_to_disk + parquet + problems.json."""

import json
import os
import shutil
import subprocess
import sys

import datasets
import fixtures_data as fx
import pyarrow.parquet as pq
import pytest
from asda_checkpoint import script_module

from modeling_asda.data.loading import load_referring_dataset
from modeling_asda.data.schema import CANONICAL_FEATURES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "prepare_refcoco.py")


def test_prepare_refcoco_end_to_end(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"), with_problems=True)
    out = tmp_path / "prepared"
    command = [
        sys.executable, SCRIPT,
        "--dataset_name", root, "--dataset_config", "refcoco", "--split_by", "unc",
        "--image_root", image_root, "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train: 3 rows" in result.stdout and "corrupt_image: 2 row(s)" in result.stdout
    assert "Converting train" in result.stderr  # the progress bar

    expected = fx.expected_rows()
    expected["10_102"] = dict(
        expected["1_11"], ref_id=10, ann_id=1010, sent_id=102, split="train", sentence="kept sentence"
    )
    # The images travel inside the prepared form: it must load without the source files.
    shutil.rmtree(os.path.join(root, "images"))

    saved = datasets.load_from_disk(str(out))
    assert all(split.features == CANONICAL_FEATURES for split in saved.values())
    fx.assert_rows_match(saved, expected, source="refer")
    for split in saved:
        assert os.path.isfile(out / "parquet" / f"{split}.parquet")
    fx.assert_rows_match(load_referring_dataset(str(out / "parquet"), cache_dir=str(tmp_path / "c2")), expected)
    fx.assert_rows_match(load_referring_dataset(str(out), cache_dir=str(tmp_path / "c2")), expected)

    with open(out / "problems.json") as f:
        problems = json.load(f)
    assert problems["rows_per_split"] == {"train": 3, "val": 3, "testA": 1, "testB": 1}
    assert {reason: entry["count"] for reason, entry in problems["by_reason"].items()} == {
        reason: len(ids) for reason, ids in fx.PROBLEMS.values()
    }
    assert problems["by_reason"]["missing_image"]["ref_ids"] == [6]


def test_no_embed_keeps_image_paths_in_parquet(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"))
    out = tmp_path / "prepared"
    args = ["--dataset_name", root, "--dataset_config", "refcoco", "--output_dir", str(out)]
    assert (
        script_module("prepare_refcoco").main(args + ["--no-embed_images", "--cache_dir", str(tmp_path / "cache")])
        == 0
    )
    image = pq.read_table(out / "parquet" / "val.parquet", columns=["image"]).column("image")[0].as_py()
    assert image["bytes"] is None and image["path"] == os.path.join(os.path.abspath(image_root), fx.coco_name(101))
    mask = pq.read_table(out / "parquet" / "val.parquet", columns=["mask"]).column("mask")[0].as_py()
    assert mask["bytes"].startswith(b"\x89PNG")

    # A second run refuses to overwrite unless asked, and then replaces the earlier output.
    assert script_module("prepare_refcoco").main(args) == 1
    assert (
        script_module("prepare_refcoco").main(
            args + ["--overwrite_output_dir", "--cache_dir", str(tmp_path / "cache")]
        )
        == 0
    )
    image = pq.read_table(out / "parquet" / "val.parquet", columns=["image"]).column("image")[0].as_py()
    assert image["bytes"] is not None  # embedded by default


def test_help_explains_the_embed_choice(capsys):
    with pytest.raises(SystemExit):
        script_module("prepare_refcoco").parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-embed_images" in text and "absolute paths" in text
    assert "--hub_dataset_id" in text and "--push_to_hub" in text
