"""Figures: feature maps mapped to the image like the masks, overlays, the explanation figure, training curves."""

import json
import sys

import numpy as np
import pytest
import torch
from asda_checkpoint import script_main, synthetic_rows, trained_checkpoint  # noqa: F401 (fixture)
from PIL import Image

from modeling_asda import ASDAImageProcessor
from modeling_asda.tools.visualization import (
    MASK_COLOR,
    explain_pairs,
    feature_map_to_heatmap,
    overlay_mask,
    plot_explanations,
    plot_training_curves,
    training_series,
)


def through_mask_mapping(values, size, image_size):
    """Map a (g, g) map in (0, 1) to the original image the way the processor maps mask probabilities."""
    values = np.clip(values, 1e-6, 1 - 1e-6)
    logits = torch.from_numpy(np.log(values / (1 - values))).float()[None, None]
    return ASDAImageProcessor(image_size=image_size).post_process_masks(logits, [size], threshold=None)[0].numpy()


@pytest.mark.parametrize("size", [(90, 140), (150, 61), (128, 128)])
def test_channel_norm_heatmap_is_cropped_and_resized_like_the_masks(size):
    features = torch.randn(6, 8, 8, generator=torch.Generator().manual_seed(0))
    norm = np.linalg.norm(features.numpy(), axis=0)
    expected = through_mask_mapping((norm - norm.min()) / (norm.max() - norm.min()), size, 128)
    heat = feature_map_to_heatmap(features, size, 128, method="norm")
    assert heat.shape == size
    np.testing.assert_allclose(heat, expected, atol=1e-4)


def test_pca_heatmap_of_a_rank_one_map_is_its_spatial_profile():
    profile = torch.rand(8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    direction = torch.tensor([3.0, -1.0, 2.0, 0.5])
    features = direction[:, None, None] * profile  # every position is a multiple of one vector
    a = profile.numpy()
    expected = through_mask_mapping((a - a.min()) / (a.max() - a.min()), (100, 128), 128)
    heat = feature_map_to_heatmap(features, (100, 128), 128, method="pca")
    np.testing.assert_allclose(heat, expected, atol=1e-4)  # sign fixed: high where the profile is high
    with pytest.raises(ValueError, match="method must be one of"):
        feature_map_to_heatmap(features, (100, 128), 128, method="mean")


def test_overlay_tints_inside_keeps_outside_and_checks_sizes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:50, 10:40] = True
    out = np.asarray(overlay_mask(Image.fromarray(image), mask, alpha=0.5)).astype(int)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    interior = (slice(25, 45), slice(15, 35))  # away from the outline
    expected = np.round(image[interior] * 0.5 + np.array(MASK_COLOR) * 0.5)
    np.testing.assert_array_equal(out[interior], expected)
    assert (out[20, 10:40] == MASK_COLOR).all()  # outline on the mask's edge
    with pytest.raises(ValueError, match="mask is 60x81 but the image is 60x80"):
        overlay_mask(Image.fromarray(image), np.zeros((60, 81), bool))


def test_explanation_records_and_figure(trained_checkpoint, tmp_path):  # noqa: F811
    _, model, processor = trained_checkpoint
    rows = synthetic_rows(3, "val")
    images, texts, masks = list(rows["image"]), list(rows["sentence"]), list(rows["mask"])
    records = explain_pairs(model, processor, images, texts, gt_masks=masks)

    inputs = processor(images=images, text=texts)
    with torch.no_grad():
        out = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
    preds = processor.post_process_masks(out.logits, inputs["original_sizes"], threshold=model.config.mask_threshold)
    for i, record in enumerate(records):
        gt = np.asarray(masks[i]) > 0
        np.testing.assert_array_equal(record["pred"], preds[i].numpy())
        union = np.count_nonzero(record["pred"] | gt)
        assert record["iou"] == pytest.approx(np.count_nonzero(record["pred"] & gt) / union if union else 1.0)
        assert record["low_layer"] == int(out.low_layer_index[i]) and record["mid_layer"] == int(
            out.mid_layer_index[i]
        )
        assert record["low_layer"] == record["low_candidates"][int(np.argmax(record["low_probs"]))]
        assert record["coarse"].shape == record["fine"].shape == gt.shape
        assert 0 <= record["coarse"].min() and record["coarse"].max() <= 1

    path = tmp_path / "explained.png"
    columns = plot_explanations(records, path, title="test", dpi=50)
    assert columns == ["image", "prediction", "ground truth", "coarse features", "fine features", "selection"]
    figure = Image.open(path)
    assert figure.size == (round(2.2 * 6 * 50), round((2.3 * 3 + 0.4) * 50))
    assert np.asarray(figure.convert("L")).std() > 10  # drawn, not blank
    no_gt = explain_pairs(model, processor, images[:1], texts[:1])
    assert plot_explanations(no_gt, tmp_path / "no_gt.png", dpi=40)[2] == "coarse features"
    assert no_gt[0]["gt"] is None and no_gt[0]["iou"] is None


LOG_HISTORY = [
    {"loss": 1.5, "learning_rate": 1e-3, "grad_norm": 2.0, "epoch": 0.5, "step": 10},
    {"loss": 1.0, "learning_rate": 5e-4, "epoch": 1.0, "step": 20},
    {
        "eval_val_loss": 0.9,
        "eval_val_mIoU": 0.25,
        "eval_val_oIoU": 0.3,
        "eval_val_Prec@0.5": 0.2,
        "epoch": 1.0,
        "step": 20,
    },
    {"eval_test_mIoU": 0.22, "eval_test_oIoU": 0.28, "epoch": 1.0, "step": 20},
    {"train_runtime": 10.0, "train_loss": 1.25, "epoch": 1.0, "step": 20},
]


def test_training_series_and_curves(tmp_path):
    series = training_series(LOG_HISTORY)
    assert series["loss"] == [(10, 1.5), (20, 1.0)]
    assert series["learning_rate"] == [(10, 1e-3), (20, 5e-4)]
    assert series["eval"] == {
        ("val", "loss"): [(20, 0.9)],
        ("val", "mIoU"): [(20, 0.25)],
        ("val", "oIoU"): [(20, 0.3)],
        ("test", "mIoU"): [(20, 0.22)],
        ("test", "oIoU"): [(20, 0.28)],
    }
    plot_training_curves(LOG_HISTORY, tmp_path / "curves.png", dpi=40)
    assert Image.open(tmp_path / "curves.png").size == (round(4.2 * 3 * 40), round(3.4 * 40))
    with pytest.raises(ValueError, match="no per-step training loss and no evaluation"):
        plot_training_curves([{"train_loss": 1.0, "step": 5}], tmp_path / "none.png")


def test_scripts_write_the_figures(trained_checkpoint, tmp_path, capsys):  # noqa: F811
    folder, _, _ = trained_checkpoint
    figure = tmp_path / "figs" / "explained.png"
    assert (
        script_main("visualize")(
            [
                "--model",
                str(folder),
                "--dataset_name",
                "synthetic",
                "--split",
                "val",
                "--indices",
                "0,2",
                "--synthetic_num_eval",
                "4",
                "--output",
                str(figure),
            ]
        )
        == 0
    )
    assert Image.open(figure).size[1] > Image.open(figure).size[0] / 6  # two rows
    scene = tmp_path / "scene.png"
    synthetic_rows(1, "test")[0]["image"].save(scene)
    assert (
        script_main("visualize")(
            [
                "--model",
                str(folder),
                "--image",
                str(scene),
                "--text",
                "the red circle",
                "--text",
                "the star",
                "--feature_method",
                "pca",
                "--output",
                str(tmp_path / "own.png"),
            ]
        )
        == 0
    )
    assert "2 rows: image, prediction, coarse features, fine features, selection" in capsys.readouterr().out

    run = tmp_path / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    assert script_main("plot_training")([str(run)]) == 0
    assert (run / "training_curves.png").is_file()
    assert "2 loss points; evaluation: test mIoU, test oIoU, val loss, val mIoU, val oIoU" in capsys.readouterr().out
    (run / "trainer_state.json").write_text(json.dumps({"log_history": [{"train_loss": 1.0, "step": 3}]}))
    with pytest.raises(SystemExit, match="logging_steps"):
        script_main("plot_training")([str(run)])
    with pytest.raises(SystemExit, match="does not exist"):
        script_main("plot_training")([str(tmp_path / "nowhere")])


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'asda-transformers\[viz\]'"):
        plot_training_curves(LOG_HISTORY, tmp_path / "x.png")
