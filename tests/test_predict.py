"""scripts/predict.py: masks at the original size equal to the model's own post-processed output; bad files skipped."""

import json
import re

import numpy as np
import pytest
import torch
from asda_checkpoint import script_main, synthetic_rows, trained_checkpoint  # noqa: F401 (fixture)
from PIL import Image

predict = script_main("predict")
SUMMARY = re.compile(r"^(\d+) images, (\d+) pairs in ([\d.]+) s \(([\d.]+) pairs/s\) on cpu(.*)$", re.MULTILINE)


def expected_mask(model, processor, image, text):
    """The model's own post-processed mask and probabilities for one pair, computed here from model + processor."""
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]).logits
    mask = processor.post_process_masks(logits, inputs["original_sizes"], threshold=model.config.mask_threshold)[0]
    probs = processor.post_process_masks(logits, inputs["original_sizes"], threshold=None)[0]
    return mask.numpy(), probs.numpy()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three images of different sizes and modes: a scene, a non-square resize, a grey (mode L) one."""
    folder = tmp_path_factory.mktemp("photos")
    rows = synthetic_rows(3, "test")
    rows[0]["image"].save(folder / "scene.png")
    rows[1]["image"].resize((97, 151)).save(folder / "tall.jpg", quality=95)
    rows[2]["image"].convert("L").resize((203, 64)).save(folder / "grey.png")
    return folder


def read_index(output_dir):
    return [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]


def test_folder_run_writes_masks_equal_to_the_model_output(trained_checkpoint, image_folder, tmp_path, capsys):  # noqa: F811
    folder, model, processor = trained_checkpoint
    texts = ["the red circle", "the star on the left"]
    out = tmp_path / "out"
    argv = [
        "--model",
        str(folder),
        "--image",
        str(image_folder),
        "--output_dir",
        str(out),
        "--device",
        "cpu",
        "--batch_size",
        "1",
    ]
    assert predict(argv + [arg for t in texts for arg in ("--text", t)]) == 0

    records = read_index(out)
    assert [(r["image"], r["text"]) for r in records] == [
        (name, t) for name in ("grey.png", "scene.png", "tall.jpg") for t in texts
    ]
    covered = 0
    for r in records:
        image = Image.open(image_folder / r["image"])
        mask_png = Image.open(out / r["mask"])
        assert mask_png.size == image.size and mask_png.mode == "L"  # the ORIGINAL size
        mask = np.asarray(mask_png)
        assert set(np.unique(mask)) <= {0, 255}
        want, probs = expected_mask(model, processor, image.convert("RGB"), r["text"])
        np.testing.assert_array_equal(mask > 0, want)  # batch of one: bit-exact
        assert r["score"] == pytest.approx(float(probs[want].mean()) if want.any() else 0.0, abs=1e-5)
        covered += want.any()

        # The overlay: the image outside the mask (below the text banner), tinted inside it.
        overlay = np.asarray(Image.open(out / r["overlay"]).convert("RGB")).astype(int)
        original = np.asarray(image.convert("RGB")).astype(int)
        assert overlay.shape == original.shape
        below_banner = np.zeros_like(want)
        below_banner[image.height // 3 :] = True
        outside, inside = ~want & below_banner, want & below_banner
        np.testing.assert_array_equal(overlay[outside], original[outside])
        if inside.any():
            assert np.abs(overlay[inside] - original[inside]).sum(axis=1).min() > 0
        assert np.abs(overlay[: image.height // 12] - original[: image.height // 12]).sum() > 0  # the text banner
    assert covered >= 3, "the fixture's masks should not all be empty"

    summary = SUMMARY.search(capsys.readouterr().out)
    assert summary and summary.group(1) == "3" and summary.group(2) == "6"
    assert float(summary.group(4)) == pytest.approx(6 / float(summary.group(3)), rel=0.05)


def test_batches_across_pairs_give_the_same_masks(trained_checkpoint, image_folder, tmp_path):  # noqa: F811
    folder, model, processor = trained_checkpoint
    mapping = {
        "scene.png": ["the red circle", "the big star"],
        "tall.jpg": "the small square",
        "grey.png": ["the shape"],
    }
    (tmp_path / "expressions.json").write_text(json.dumps(mapping))
    out = tmp_path / "out"
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(image_folder),
                "--expressions",
                str(tmp_path / "expressions.json"),
                "--output_dir",
                str(out),
                "--batch_size",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    records = read_index(out)
    assert [(r["image"], r["text"]) for r in records] == [
        ("scene.png", "the red circle"),
        ("scene.png", "the big star"),
        ("tall.jpg", "the small square"),
        ("grey.png", "the shape"),
    ]
    threshold = model.config.mask_threshold
    for r in records:
        want, probs = expected_mask(model, processor, Image.open(image_folder / r["image"]).convert("RGB"), r["text"])
        mask = np.asarray(Image.open(out / r["mask"])) > 0
        differ = mask != want  # batched matmuls differ in the last bits: only pixels at the threshold may flip
        assert np.all(np.abs(probs[differ] - threshold) < 1e-4)


def test_csv_expressions_and_threshold(trained_checkpoint, image_folder, tmp_path):  # noqa: F811
    folder, model, processor = trained_checkpoint
    (tmp_path / "pairs.csv").write_text('image,text\nscene.png,the red circle\nscene.png,"the star, on the left"\n')
    out = tmp_path / "out"
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(image_folder / "scene.png"),
                "--expressions",
                str(tmp_path / "pairs.csv"),
                "--output_dir",
                str(out),
                "--threshold",
                "0.5",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    records = read_index(out)
    assert [r["text"] for r in records] == ["the red circle", "the star, on the left"]
    _, probs = expected_mask(model, processor, Image.open(image_folder / "scene.png").convert("RGB"), "the red circle")
    np.testing.assert_array_equal(np.asarray(Image.open(out / records[0]["mask"])) > 0, probs > 0.5)


def test_unreadable_files_are_reported_skipped_and_counted(trained_checkpoint, image_folder, tmp_path, capsys):  # noqa: F811
    folder, _, _ = trained_checkpoint
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.png").write_bytes((image_folder / "scene.png").read_bytes())
    (photos / "corrupt.png").write_bytes((image_folder / "scene.png").read_bytes()[:300])  # truncated
    (photos / "notes.txt").write_text("not an image")
    mapping = {"good.png": "the red circle", "corrupt.png": "the star", "notes.txt": "a", "missing.png": "the square"}
    (tmp_path / "expressions.json").write_text(json.dumps(mapping))
    out = tmp_path / "out"
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(photos),
                "--expressions",
                str(tmp_path / "expressions.json"),
                "--output_dir",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "skipped corrupt.png: corrupt or unreadable image" in captured.err
    assert "skipped notes.txt: unsupported file type '.txt'" in captured.err
    assert "skipped missing.png: missing file" in captured.err
    summary = SUMMARY.search(captured.out)
    assert summary.group(1) == "1" and summary.group(2) == "1"
    assert summary.group(5) == "; skipped 3 file(s): corrupt.png, notes.txt, missing.png"
    assert [r["image"] for r in read_index(out)] == ["good.png"]
    assert sorted(p.name for p in out.iterdir()) == [
        "good_0_the-red-circle_mask.png",
        "good_0_the-red-circle_overlay.png",
        "predictions.jsonl",
    ]

    # A plain folder run (same --text for every file) skips the same files; nothing readable -> exit status 1.
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(photos),
                "--text",
                "the star",
                "--output_dir",
                str(tmp_path / "b"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "skipped 2 file(s): corrupt.png, notes.txt" in capsys.readouterr().out
    (photos / "good.png").unlink()
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(photos),
                "--text",
                "x",
                "--output_dir",
                str(tmp_path / "c"),
                "--device",
                "cpu",
            ]
        )
        == 1
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", "a", "--expressions", "e.json"], "either with --text"),
        ([], "either with --text"),
        (["--text", " "], "non-empty string"),
        (["--expressions", "pairs.csv"], "header row with the columns 'image' and 'text'"),
        (["--expressions", "bad.json"], "is not valid JSON"),
        (["--expressions", "nothing.json"], "does not exist"),
    ],
)
def test_bad_arguments_give_clear_errors(trained_checkpoint, image_folder, tmp_path, monkeypatch, args, message):  # noqa: F811
    folder, _, _ = trained_checkpoint
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.json").write_text('{"scene.png": "a"}')
    (tmp_path / "pairs.csv").write_text("file,expression\nscene.png,a\n")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match=message):
        predict(["--model", str(folder), "--image", str(image_folder)] + args)


def test_missing_image_argument_is_an_error(trained_checkpoint, tmp_path):  # noqa: F811
    folder, _, _ = trained_checkpoint
    with pytest.raises(SystemExit, match="does not exist"):
        predict(["--model", str(folder), "--image", str(tmp_path / "nope.png"), "--text", "a"])


def test_bf16_autocast_runs_and_stays_close_to_fp32(trained_checkpoint, image_folder, tmp_path, capsys):  # noqa: F811
    folder, model, processor = trained_checkpoint
    out = tmp_path / "out"
    assert (
        predict(
            [
                "--model",
                str(folder),
                "--image",
                str(image_folder / "scene.png"),
                "--text",
                "the red circle",
                "--output_dir",
                str(out),
                "--bf16",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "with bf16 autocast" in capsys.readouterr().out
    mask = np.asarray(Image.open(out / read_index(out)[0]["mask"])) > 0
    want, _ = expected_mask(model, processor, Image.open(image_folder / "scene.png").convert("RGB"), "the red circle")
    assert mask.shape == want.shape and (mask == want).mean() > 0.9
