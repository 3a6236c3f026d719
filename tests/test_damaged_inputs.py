"""Damaged inputs, each made here from small fixtures: the run stops with a message naming the file (and the
field, line or split), or gives the correct result. Never a silent wrong result, never a bare traceback.

docs/robustness.md lists these cases with the behaviour before and after. The launch cases (multi-machine,
FSDP, DeepSpeed) are in test_distributed_launch.py.
"""

import json
import logging
import os
import pickle
import shutil
import urllib.request

import datasets
import fixtures_data as fx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from asda_checkpoint import script_main, script_module, trained_checkpoint  # noqa: F401 (fixture)
from PIL import Image

from modeling_asda import ASDAForReferringSegmentation
from modeling_asda.data.convert import build_dataset_dict, records_of
from modeling_asda.data.loading import load_referring_dataset
from modeling_asda.data.refer import refer_records

predict = script_main("predict")
prepare = script_main("prepare_refcoco")


def load(root, tmp_path, **kwargs):
    return load_referring_dataset(root, cache_dir=str(tmp_path / "cache"), return_report=True, **kwargs)


def refer_folder(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"))
    return root, image_root, os.path.join(root, "refcoco")


def read_refs(folder):
    with open(os.path.join(folder, "refs(unc).p"), "rb") as f:
        return pickle.load(f, encoding="utf-8")


def write_refs(folder, refs):
    with open(os.path.join(folder, "refs(unc).p"), "wb") as f:
        pickle.dump(refs, f)


def edit_instances(folder, edit):
    path = os.path.join(folder, "instances.json")
    with open(path) as f:
        instances = json.load(f)
    edit(instances)
    with open(path, "w") as f:
        json.dump(instances, f)


# ------------------------------------------------------------------------------- REFER files
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], r"refs\(unc\)\.p cannot be read as a REFER refs pickle"),
        (lambda data: b"this is not a pickle", r"refs\(unc\)\.p cannot be read as a REFER refs pickle"),
        (lambda data: pickle.dumps({"refs": []}), r"refs\(unc\)\.p does not hold a list of refs"),
    ],
    ids=["truncated", "garbage", "not-a-list"],
)
def test_damaged_refs_pickle_names_the_file(tmp_path, damage, message):
    root, image_root, folder = refer_folder(tmp_path)
    path = os.path.join(folder, "refs(unc).p")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(damage(data))
    with pytest.raises(ValueError, match=message):
        load(root, tmp_path, dataset_config="refcoco", image_root=image_root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (None, r"instances\.json is not valid JSON"),
        (lambda d: d.pop("annotations"), r"instances\.json has no 'annotations' list"),
        (lambda d: d.pop("images"), r"instances\.json has no 'images' list"),
        (lambda d: d["annotations"][1].pop("segmentation"), r"annotations\[1\] \(id 1002\) has no 'segmentation'"),
        (lambda d: d["images"][0].pop("file_name"), r"images\[0\] \(id 101\) has no 'file_name'"),
    ],
    ids=["truncated", "no-annotations", "no-images", "no-segmentation", "no-file_name"],
)
def test_damaged_instances_json_names_the_file_and_field(tmp_path, edit, message):
    root, image_root, folder = refer_folder(tmp_path)
    if edit is None:
        path = os.path.join(folder, "instances.json")
        text = open(path).read()
        open(path, "w").write(text[: len(text) // 2])
    else:
        edit_instances(folder, edit)
    with pytest.raises(ValueError, match=message) as info:
        load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    assert "instances.json" in str(info.value) and "download them again" in str(info.value)


def test_a_ref_without_sentences_names_the_ref(tmp_path):
    root, image_root, folder = refer_folder(tmp_path)
    refs = read_refs(folder)
    del refs[2]["sentences"]
    write_refs(folder, refs)
    with pytest.raises(ValueError, match=rf"refs\(unc\)\.p: ref {refs[2]['ref_id']} has no 'sentences' field"):
        load(root, tmp_path, dataset_config="refcoco", image_root=image_root)


# ------------------------------------------------------------------------------- parquet column types
def _rewrite_column(path, column, values):
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values))
    pq.write_table(table, path)


@pytest.mark.parametrize("kind", ["lmms-lab", "jxu124", "prepared"])
def test_a_wrong_typed_column_names_the_file_and_column(tmp_path, kind):
    folder = tmp_path / kind
    image_root = None
    if kind == "lmms-lab":
        fx.write_lmms(str(folder))
        column, value = "image", "COCO_train2014_000000000101.jpg"  # a path string, not the image struct
    elif kind == "jxu124":
        _, image_root = fx.write_jxu(str(folder))
        column, value = "image_path", 101  # an integer, not the file path
    else:
        fx.write_prepared(str(folder), kind="parquet")
        column, value = "image", "101.jpg"
    path = sorted(folder.rglob("*.parquet"))[0]
    rows = pq.read_metadata(path).num_rows
    _rewrite_column(path, column, [value] * rows)
    with pytest.raises(ValueError, match=rf"{path.name}: column '{column}' is .*, expected"):
        load(str(folder), tmp_path, image_root=image_root)


# ------------------------------------------------------------------------------- whole data set checks
def test_duplicate_sample_ids_in_different_shards_are_dropped_and_reported(tmp_path):
    """Shards are converted apart (in other processes with num_proc): a per-shard check misses this."""
    root, image_root, folder = refer_folder(tmp_path)
    records = refer_records(
        os.path.join(folder, "refs(unc).p"), os.path.join(folder, "instances.json"), image_root, {"val"}
    )["val"]
    duplicate = dict(records[0])
    shards = {"val": [{"records": records, "num_rows": len(records)}, {"records": [duplicate], "num_rows": 1}]}
    dataset, report = build_dataset_dict(shards, records_of, ["dup-test"], cache_dir=str(tmp_path / "cache"))
    ids = dataset["val"]["sample_id"]
    assert len(ids) == len(set(ids)) == sum(len(r["sentences"]) for r in records)
    assert report.counts() == {"duplicate_sample_id": len(duplicate["sentences"])}
    assert {p["ref_id"] for p in report} == {duplicate["ref_id"]}


def test_refs_and_images_shared_by_train_and_eval_are_reported(tmp_path, caplog):
    root, image_root, folder = refer_folder(tmp_path)
    refs = read_refs(folder)
    leaked = dict(next(r for r in refs if r["split"] == "val"), split="train")
    leaked["sentences"] = [dict(s, sent_id=s["sent_id"] + 900) for s in leaked["sentences"]]
    write_refs(folder, refs + [leaked])
    out = tmp_path / "prepared"
    with caplog.at_level(logging.WARNING):
        code = prepare(["--dataset_name", root, "--dataset_config", "refcoco", "--image_root", image_root,
                        "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    shared = json.loads((out / "problems.json").read_text())["shared_between_splits"]["train/val"]
    assert leaked["ref_id"] in shared["ref_ids"] and leaked["image_id"] in shared["image_ids"]
    assert "shared between train/val" in caplog.text and str(leaked["ref_id"]) in caplog.text


def test_a_changed_image_is_noticed_by_the_cache_and_rebuild_converts_again(tmp_path):
    root, image_root = fx.write_refer(str(tmp_path / "refer"))
    first, report = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    assert len(report) == 0
    cached, _ = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    assert cached["val"].cache_files == first["val"].cache_files  # unchanged inputs: the cache is used
    rebuilt, _ = load(root, tmp_path, dataset_config="refcoco", image_root=image_root, rebuild=True)
    assert rebuilt["val"].cache_files != first["val"].cache_files

    image = os.path.join(image_root, fx.coco_name(101))
    data = open(image, "rb").read()
    open(image, "wb").write(data[:300])  # truncated after the conversion was cached
    again, report = load(root, tmp_path, dataset_config="refcoco", image_root=image_root)
    assert report.counts().get("corrupt_image", 0) > 0  # converted again, so the damage is found
    assert all(row["image_id"] != 101 for split in again.values() for row in split.select_columns(["image_id"]))


# ------------------------------------------------------------------------------- empty splits
@pytest.mark.parametrize("role", ["training", "evaluation"])
def test_an_empty_split_stops_the_run_with_its_name(tmp_path, role):
    root, image_root, folder = refer_folder(tmp_path)
    os.remove(os.path.join(image_root, fx.coco_name(102)))  # every row of train and testB is then dropped
    tasks = ["--do_train", "--eval_splits", "val"] if role == "training" else ["--do_eval", "--eval_splits", "testB"]
    with pytest.raises(SystemExit) as info:
        script_main("run_ris")(["--config_preset", "tiny", "--dataset_name", root, "--dataset_config", "refcoco",
                                "--image_root", image_root, *tasks, "--report_to", "none",
                                "--output_dir", str(tmp_path / "out")])  # fmt: skip
    split = "train" if role == "training" else "testB"
    assert f"The {role} split '{split}' of {root} has no rows" in str(info.value.code)
    assert not (tmp_path / "out" / "README.md").exists()


def test_prepare_with_an_empty_split_writes_nothing(tmp_path):
    root, image_root, folder = refer_folder(tmp_path)
    os.remove(os.path.join(image_root, fx.coco_name(102)))  # the only image of the train split
    out = tmp_path / "prepared"
    code = prepare(["--dataset_name", root, "--dataset_config", "refcoco", "--image_root", image_root,
                    "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 1
    assert not out.exists() and not list(tmp_path.glob("prepared.partial-*"))


def test_a_failed_preparation_leaves_the_previous_output_whole(tmp_path, monkeypatch):
    root, image_root, folder = refer_folder(tmp_path)
    out = tmp_path / "prepared"
    args = ["--dataset_name", root, "--dataset_config", "refcoco", "--image_root", image_root,
            "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert prepare(args) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def fail_half_way(dataset, report, output_dir, **kwargs):
        os.makedirs(output_dir)
        open(os.path.join(output_dir, "dataset_dict.json"), "w").write("{")
        raise OSError("disk full")

    prepare_module = script_module("prepare_refcoco")
    monkeypatch.setattr(prepare_module, "save_prepared", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        prepare_module.main(args + ["--overwrite_output_dir"])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert datasets.load_from_disk(str(out))["val"].num_rows > 0
    assert not list(tmp_path.glob("prepared.partial-*"))


# ------------------------------------------------------------------------------- checkpoints
@pytest.fixture
def damaged_checkpoints(trained_checkpoint, tmp_path):  # noqa: F811
    folder, _, _ = trained_checkpoint
    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign"
    shutil.copytree(folder, foreign)
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    return truncated, foreign


def test_damaged_or_foreign_checkpoints_name_the_file(damaged_checkpoints, tmp_path):
    truncated, foreign = damaged_checkpoints
    with pytest.raises(OSError, match=rf"{truncated}/model\.safetensors: the safetensors weights cannot be read"):
        ASDAForReferringSegmentation.from_pretrained(truncated)
    with pytest.raises(ValueError, match=rf"{foreign}: its config.json is for a 'bert' model, not ASDA"):
        ASDAForReferringSegmentation.from_pretrained(foreign)

    image = tmp_path / "scene.png"
    Image.new("RGB", (40, 30)).save(image)
    for checkpoint, message in ((truncated, "model.safetensors: the safetensors"), (foreign, "'bert' model")):
        with pytest.raises(SystemExit) as info:
            predict(
                ["--model", str(checkpoint), "--image", str(image), "--text", "x", "--output_dir", str(tmp_path / "p")]
            )
        assert message in str(info.value.code)
        with pytest.raises(SystemExit) as info:
            script_main("run_ris")(["--model_name_or_path", str(checkpoint), "--dataset_name", "synthetic",
                                    "--synthetic_num_eval", "4", "--do_eval", "--report_to", "none",
                                    "--output_dir", str(tmp_path / "r")])  # fmt: skip
        assert message in str(info.value.code)


def test_resuming_from_a_folder_without_optimizer_state_warns(trained_checkpoint, tmp_path, caplog):  # noqa: F811
    from modeling_asda.training.arguments import RISTrainingArguments
    from modeling_asda.training.trainer import RISTrainer

    folder, model, processor = trained_checkpoint
    args = RISTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    trainer = RISTrainer(model=model, args=args, processing_class=processor)
    trainer.create_optimizer()
    with caplog.at_level(logging.WARNING):
        trainer._load_optimizer_and_scheduler(str(folder))
    assert f"{folder} has no optimizer state (optimizer.pt)" in caplog.text and "FRESH optimizer" in caplog.text


# ------------------------------------------------------------------------------- predict.py and the pipeline
def test_output_names_stay_distinct_after_cleaning(trained_checkpoint, tmp_path):  # noqa: F811
    folder, _, _ = trained_checkpoint
    images = tmp_path / "images"
    images.mkdir()
    names = ["a b.png", "a_b.png", "🐱.png", "🐶.png"]
    for i, name in enumerate(names):
        Image.new("RGB", (30 + i, 20), (40 * i, 0, 0)).save(images / name)
    out = tmp_path / "out"
    assert (
        predict(["--model", str(folder), "--image", str(images), "--text", "the red one", "--output_dir", str(out)])
        == 0
    )
    index = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(record["image"] for record in index) == sorted(names)
    masks = [record["mask"] for record in index]
    assert len(set(masks)) == 4 and len(list(out.glob("*_mask.png"))) == 4
    for record in index:  # each mask file is the one of its own image (the widths differ)
        assert Image.open(out / record["mask"]).size == Image.open(images / record["image"]).size


def _special_images():
    """16-bit grey, palette with transparency, grey+alpha, RGBA: modes that 8-bit RGB conversion gets wrong."""
    rng = np.random.default_rng(0)
    grey16 = Image.fromarray(rng.integers(0, 65535, (24, 32), dtype=np.uint16))
    palette = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).quantize(8)
    palette.info["transparency"] = 0
    alpha = Image.fromarray(rng.integers(0, 255, (24, 32, 2), dtype=np.uint8), mode="LA")
    rgba = Image.fromarray(rng.integers(0, 255, (24, 32, 4), dtype=np.uint8), mode="RGBA")
    return {"grey16.png": grey16, "palette.png": palette, "alpha.png": alpha, "rgba.png": rgba}


def _probabilities(model, processor, image, text):
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]).logits
    return processor.post_process_masks(logits, inputs["original_sizes"], threshold=None)[0].numpy()


def test_images_by_path_are_read_as_the_processor_reads_them(trained_checkpoint, tmp_path):  # noqa: F811
    from modeling_asda.pipeline_asda import ReferringSegmentationPipeline
    from modeling_asda.tools.predict import read_image

    folder, model, processor = trained_checkpoint
    pipe = ReferringSegmentationPipeline(model=model, processor=processor)
    images = tmp_path / "images"
    images.mkdir()
    for name, image in _special_images().items():
        image.save(images / name)
    out = tmp_path / "out"
    assert (
        predict(["--model", str(folder), "--image", str(images), "--text", "the thing", "--output_dir", str(out)]) == 0
    )
    index = {
        record["image"]: record for record in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
    }
    for name in _special_images():
        reopened = Image.open(images / name)  # the file as stored, given to the processor as a PIL object
        expected_input = processor(images=reopened, text="the thing")["pixel_values"]
        # The exact model input, by path through the pipeline and through predict.py's reader.
        assert torch.equal(
            pipe.preprocess({"image": str(images / name), "text": "the thing"})["pixel_values"], expected_input
        ), name
        assert torch.equal(
            processor(images=read_image(images / name), text="the thing")["pixel_values"], expected_input
        ), name
        expected = _probabilities(model, processor, reopened, "the thing") > model.config.mask_threshold
        by_path = np.asarray(pipe(str(images / name), text="the thing", mask_format="numpy")["mask"])
        written = np.asarray(Image.open(out / index[name]["mask"])) > 0
        assert np.array_equal(by_path, expected) and np.array_equal(written, expected), name
    # What 8-bit RGB conversion did: the 16-bit image read as (almost) white.
    white = processor(images=Image.new("RGB", (32, 24), "white"), text="x")["pixel_values"]
    grey = pipe.preprocess({"image": str(images / "grey16.png"), "text": "x"})["pixel_values"]
    assert (grey - white).abs().mean() > 0.5


def test_csv_with_extra_fields_names_the_line_and_a_byte_order_mark_is_read(trained_checkpoint, tmp_path):  # noqa: F811
    folder, _, _ = trained_checkpoint
    Image.new("RGB", (30, 20)).save(tmp_path / "cat.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("image,text\ncat.png,the cat\ncat.png,the cat, on the left\n")
    with pytest.raises(SystemExit) as info:
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(tmp_path),
                "--expressions",
                str(bad),
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )
    assert "bad.csv: line 3 has 3 fields but the header has 2" in str(info.value.code)
    assert "double quotes" in str(info.value.code)

    bom = tmp_path / "excel.csv"
    bom.write_bytes('image,text\ncat.png,"the cat, on the left"\n'.encode("utf-8-sig"))
    out = tmp_path / "out"
    assert (
        predict(
            ["--model", str(folder), "--image", str(tmp_path), "--expressions", str(bom), "--output_dir", str(out)]
        )
        == 0
    )
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert record["image"] == "cat.png" and record["text"] == "the cat, on the left"


def test_an_unfetchable_url_and_an_empty_list_are_clear_errors(trained_checkpoint, monkeypatch):  # noqa: F811
    from modeling_asda.pipeline_asda import ReferringSegmentationPipeline

    _, model, processor = trained_checkpoint
    pipe = ReferringSegmentationPipeline(model=model, processor=processor)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    url = "https://example.com/cat.png"
    with pytest.raises(ValueError, match=rf"could not fetch the image {url}: .*no network"):
        pipe(url, text="the cat")
    with pytest.raises(FileNotFoundError, match="no image file /nonexistent/cat.png"):
        pipe("/nonexistent/cat.png", text="the cat")
    with pytest.raises(ValueError, match=r"no images were given \(an empty list\)"):
        pipe([], text="the cat")
    with pytest.raises(ValueError, match="got an empty list"):
        pipe([])
