"""What the small-scale options do: decoder upsampling, the Lovász term, results by expression type, and the
REFER-layout shapes generator (read back through the REFER loader)."""

import numpy as np
import pytest
import torch
from test_modeling import random_batch

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.data import refer_shapes
from modeling_asda.data.loading import load_referring_dataset
from modeling_asda.evaluation.baselines import WHOLE_IMAGE
from modeling_asda.evaluation.expression_types import (
    WITH_SHAPE,
    WITHOUT_SHAPE,
    format_by_type_table,
    metrics_by_expression_type,
    unlearned_word_types,
)
from modeling_asda.evaluation.refer_baselines import (
    annotations_by_image,
    refer_language_blind_baselines,
    refer_random_object_counts,
)
from modeling_asda.modeling_loss import dice_loss, lovasz_hinge_loss, sigmoid_focal_loss


# ------------------------------------------------------------------------------------ decoder upsampling
@pytest.mark.parametrize("upsampling", [4, 16])
def test_decoder_upsampling_sets_the_logits_size_and_trains(upsampling):
    torch.manual_seed(0)
    config = ASDAConfig.tiny(decoder_upsampling=upsampling, mask_refiner_dim=0)
    model = ASDAForReferringSegmentation(config)
    pixels, ids, mask, labels = random_batch(config)
    out = model(pixels, ids, mask, labels=labels, output_feature_maps=True)
    side = config.grid_size * upsampling
    assert config.mask_size == side
    assert out.logits.shape == (2, 1, side, side)
    assert out.response_masks.shape == (2, config.num_response_masks, side, side)
    out.loss.backward()
    decoder = model.aligner.decoder
    assert len(decoder.stages) == 2 * (upsampling.bit_length() - 1)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())


def test_decoder_upsampling_and_lovasz_weight_reject_bad_values():
    with pytest.raises(ValueError, match="decoder_upsampling"):
        ASDAConfig.tiny(decoder_upsampling=12)
    with pytest.raises(ValueError, match="lovasz_weight"):
        ASDAConfig.tiny(lovasz_weight=-1.0)


# ---------------------------------------------------------------------------------------- Lovász
def _jaccard_loss_of_errors(labels, errors):
    """1 - |y ∩ ŷ| / |y ∪ ŷ| when exactly the pixels in `errors` are predicted wrongly, counted by hand."""
    predicted = labels.copy()
    predicted[errors] = ~predicted[errors]
    union = (labels | predicted).sum()
    return 1.0 - (labels & predicted).sum() / union


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_lovasz_hinge_is_the_jaccard_loss_on_uniform_errors(scale):
    # Hinge errors of `scale` on a set M and 0 elsewhere: the Lovász extension is scale * Jaccard loss(M).
    rng = np.random.default_rng(0)
    labels = rng.random((3, 9, 11)) > 0.6
    errors = rng.random((3, 9, 11)) > 0.8
    sign = np.where(labels, 1.0, -1.0)
    logits = np.where(errors, sign * (1 - scale), sign)
    got = lovasz_hinge_loss(torch.tensor(logits), torch.tensor(labels, dtype=torch.float64))
    expected = np.mean([scale * _jaccard_loss_of_errors(labels[i], errors[i]) for i in range(3)])
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_lovasz_hinge_is_zero_with_margin_and_handles_empty_targets():
    labels = torch.zeros(2, 1, 6, 6)
    labels[0, 0, 1:4, 2:5] = 1
    logits = (2 * labels - 1) * 3.0
    assert lovasz_hinge_loss(logits, labels).item() == 0.0
    # An empty target: the largest hinge error alone (every positive prediction costs IoU 0).
    logits = torch.full((1, 1, 6, 6), -2.0)
    logits[0, 0, 0, 0] = 0.5
    assert lovasz_hinge_loss(logits, torch.zeros(1, 1, 6, 6)).item() == pytest.approx(1.5)


def test_model_loss_adds_the_weighted_lovasz_term():
    torch.manual_seed(0)
    config = ASDAConfig.tiny(decoder_upsampling=16, lovasz_weight=0.7, mask_refiner_dim=0)
    model = ASDAForReferringSegmentation(config).eval()
    pixels, ids, mask, labels = random_batch(config)
    with torch.no_grad():
        out = model(pixels, ids, mask, labels=labels)
    target = labels[:, None]  # logits at the input size: no resizing
    logits = out.logits
    expected = sigmoid_focal_loss(logits, target) + dice_loss(logits, target) + 0.7 * lovasz_hinge_loss(logits, target)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# --------------------------------------------------------------------------------- by expression type
def test_metrics_by_expression_type_group_the_samples_by_their_words():
    sentences = ["the red circle left of the star", "the leftmost hexagon", "big orange one", "the square"]
    intersections = [9, 0, 5, 10]
    unions = [10, 10, 10, 10]
    result = metrics_by_expression_type(sentences, intersections, unions)
    assert result["relation"]["count"] == 1 and result["relation"]["mIoU"] == pytest.approx(0.9)
    assert result["position"]["mIoU"] == 0.0
    assert result["attributes only"]["count"] == 2 and result["attributes only"]["mIoU"] == pytest.approx(0.75)
    assert result[WITH_SHAPE]["count"] == 3 and result[WITH_SHAPE]["mIoU"] == pytest.approx(19 / 30)
    assert result[WITHOUT_SHAPE]["count"] == 1 and result[WITHOUT_SHAPE]["Prec@0.5"] == 0.0
    table = format_by_type_table({"test": result})
    assert "| relation | 1 | 90.00 | 100.00 | 0.00 |" in table
    with pytest.raises(ValueError, match="sentences"):
        metrics_by_expression_type(sentences[:2], intersections, unions)


def test_position_and_relation_words_scoring_like_a_random_object_are_flagged():
    from modeling_asda.training.experiment import _unlearned_words_warnings

    sentences = ["the circle on the left", "the star above the square", "the red one", "the big star"]
    # A run that learned attributes only: its position and relation expressions land on the wrong object.
    failed = metrics_by_expression_type(sentences, [4, 3, 10, 9], [10, 10, 10, 10])
    grounded = metrics_by_expression_type(sentences, [9, 8, 10, 9], [10, 10, 10, 10])
    blind = {"val": 0.20, "test": 0.30}
    assert unlearned_word_types({"test": failed}, blind) == {"test": ["position", "relation"]}
    assert unlearned_word_types({"test": grounded}, blind) == {}
    # Against 0.20 the cut is 0.35: position (0.40) passes, relation (0.30) does not.
    assert unlearned_word_types({"val": failed, "test": grounded}, blind) == {"val": ["relation"]}
    assert unlearned_word_types({"other": failed}, blind) == {}  # no language-blind number for that split
    lines = _unlearned_words_warnings({"test": failed}, {"test": {"mIoU": 0.30}})
    assert len(lines) == 1 and lines[0].startswith("test: position 40.0, relation 30.0 mIoU")
    assert "random object of the scene (30.0)" in lines[0]
    assert _unlearned_words_warnings({"test": grounded}, {"test": {"mIoU": 0.30}}) == []
    assert _unlearned_words_warnings({"test": failed}, {}) == []  # no baseline computed: nothing to compare with


def test_a_run_still_on_the_plateau_at_the_check_step_is_warned_once(caplog):
    from transformers import TrainerControl, TrainerState

    from modeling_asda.training.trainer import LossPlateauCallback

    def logs_at(callback, entries):
        state = TrainerState(max_steps=1875)
        for step, logs in entries:
            state.global_step = step
            callback.on_log(None, state, TrainerControl(), logs=logs)

    with caplog.at_level("WARNING", logger="modeling_asda.training.trainer"):
        # Before the step nothing is checked; an evaluation log (no "loss") at the step is skipped; the first
        # training loss at or after it decides, once.
        logs_at(
            LossPlateauCallback(1000, 1.12),
            [(950, {"loss": 1.5}), (1000, {"eval_val_mIoU": 0.4}), (1000, {"loss": 1.21}), (1050, {"loss": 1.3})],
        )
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "training loss 1.210 at step 1000 is above 1.12" in warnings[0] and "remaining 875 steps" in warnings[0]

    caplog.clear()
    with caplog.at_level("WARNING", logger="modeling_asda.training.trainer"):
        logs_at(LossPlateauCallback(1000, 1.12), [(1000, {"loss": 0.86}), (1050, {"loss": 1.3})])  # checked: fine
        logs_at(LossPlateauCallback(1000, 1.12), [(1040, {"loss": 1.13})])  # logs every 40 steps: the first after
        logs_at(LossPlateauCallback(0, 1.12), [(1000, {"loss": 2.0})])  # off
    assert [record.getMessage()[:41] for record in caplog.records] == ["WARNING: training loss 1.130 at step 1040"]


def test_the_plateau_check_needs_a_loss_and_the_demo_sets_it():
    import json
    import os

    from modeling_asda.training.arguments import RISTrainingArguments

    with pytest.raises(ValueError, match="--plateau_check_loss"):
        RISTrainingArguments(output_dir="x", plateau_check_step=1000)
    assert RISTrainingArguments(output_dir="x").plateau_check_step == 0  # off unless a recipe sets it
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo_synthetic.json")
    with open(demo) as handle:
        values = json.load(handle)
    assert (values["plateau_check_step"], values["plateau_check_loss"]) == (1000, 1.12)


# ------------------------------------------------------------------------------- REFER shapes generator
@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer-shapes")
    counts = refer_shapes.write_refer_shapes(str(root), num_train_images=12, num_eval_images=4)
    data = load_referring_dataset(str(root), dataset_config="refcoco", cache_dir=str(root / "cache"))
    return counts, data, root


def test_refer_shapes_loads_through_the_refer_loader_with_every_split(shapes_data):
    counts, data, _ = shapes_data
    assert counts == {"train": 24, "val": 8, "testA": 8, "testB": 8}
    assert set(data) == {"train", "val", "testA", "testB"}
    for split, dataset in data.items():
        assert len({row for row in dataset["ref_id"]}) == counts[split]  # every ref kept, none dropped
        assert all(row["source"] == "refer" for row in dataset.select(range(2)))


def test_refer_shapes_expressions_name_their_object(shapes_data):
    # The words of the target's own noun phrase (before a relation) must describe the pixels under its mask.
    _, data, _ = shapes_data
    names = {index + 1: shape for index, shape in enumerate(refer_shapes.SHAPES)}
    colours = {name: np.array(rgb, dtype=float) for name, rgb in refer_shapes.COLORS.items()}
    checked_colour = checked_shape = 0
    for row in data["train"]:
        words = row["sentence"]
        for phrase in (" to the left of ", " right of ", " above ", " underneath ", " beneath ", " under "):
            words = words.split(phrase)[0]
        words = words.split()
        mask = np.asarray(row["mask"]) > 0
        assert mask.sum() > 20
        pixels = np.asarray(row["image"].convert("RGB"), dtype=float)[mask]
        named = [w for w in words if w in colours]
        if named:
            nearest = min(colours, key=lambda c: np.abs(np.median(pixels, axis=0) - colours[c]).sum())
            assert nearest == named[0], row["sentence"]
            checked_colour += 1
        shapes = [w for w in words if w in refer_shapes.SHAPES]
        if shapes:
            assert names[row["category_id"]] == shapes[0], row["sentence"]
            checked_shape += 1
    assert checked_colour >= 5 and checked_shape >= 5


def test_refer_shapes_rejects_an_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        refer_shapes.write_refer_shapes(str(tmp_path), 1, 1, variant="other")


def test_refer_baselines_match_counts_made_by_hand(shapes_data):
    _, data, root = shapes_data
    instances = root / "refcoco" / "instances.json"
    split = data["val"]
    by_image = annotations_by_image(str(instances))
    # Whole image: IoU = the target's share of the picture.
    shares = [(np.asarray(row["mask"]) > 0).mean() for row in split]
    whole = refer_language_blind_baselines(split, str(instances))[WHOLE_IMAGE]
    assert whole["mIoU"] == pytest.approx(float(np.mean(shares)), rel=1e-9)
    # Random object: objects never overlap, so each draw scores 1 (the target) or 0, and over many seeds the
    # mean is the mean of 1 / (annotated objects in the picture).
    expected = np.mean([1 / len(by_image[row["image_id"]]) for row in split])
    scores = []
    for seed in range(40):
        intersections, unions = refer_random_object_counts(split, by_image, seed)
        ious = np.asarray(intersections) / np.asarray(unions)
        assert set(np.unique(ious)) <= {0.0, 1.0}
        scores.append(ious.mean())
    assert np.mean(scores) == pytest.approx(expected, abs=0.1)
    assert all(len(by_image[row["image_id"]]) >= 2 for row in split)  # every object is annotated, not only targets
