"""The selection report's counts equal an independent count of the model's own per-sample layer choices."""

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch
from asda_checkpoint import script_main, synthetic_rows

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.evaluation.selection_report import (
    build_selection_report,
    cramers_v,
    expression_type,
    format_selection_markdown,
    length_bucket,
    predict_selection,
)


@pytest.mark.parametrize(
    "text, kind",
    [
        ("the red circle left of the big star", "relation"),
        ("star to the right of the blue square", "relation"),
        ("the triangle above the green circle", "relation"),
        ("small square below the star", "relation"),
        ("the left shape", "position"),
        ("red circle at the bottom", "position"),
        ("The star in the MIDDLE", "position"),
        ("the small yellow circle", "attributes only"),
        ("big blue one", "attributes only"),
        ("leftover pizza slice", "attributes only"),  # 'left' only as a whole word
    ],
)
def test_expression_type(text, kind):
    assert expression_type(text) == kind


@pytest.mark.parametrize(
    "text, bucket",
    [
        ("circle", "1-2"),
        ("red circle", "1-2"),
        ("the red circle", "3-4"),
        ("a  b c d e", "5-6"),
        ("w " * 8, "7-8"),
        ("w " * 9, "9+"),
    ],
)
def test_length_bucket(text, bucket):
    assert length_bucket(text) == bucket


def test_cramers_v_extremes():
    assert cramers_v(["a", "a", "b", "b"], [1, 1, 2, 2]) == pytest.approx(1.0)  # the group decides the layer
    assert cramers_v(["a", "b", "a", "b"], [1, 1, 2, 2]) == pytest.approx(0.0)  # independent
    assert cramers_v(["a", "b"], [1, 1]) is None  # a single layer: nothing to measure


@pytest.fixture(scope="module")
def model_and_rows():
    """A tiny model whose selector weights are scaled up so that different expressions pick different layers."""
    torch.manual_seed(0)
    model = ASDAForReferringSegmentation(ASDAConfig.tiny()).eval()
    with torch.no_grad():
        for selector in (model.feature_selection.low_selector, model.feature_selection.mid_selector):
            selector.net.weight.mul_(300)
    return model, ASDAProcessor.from_model_config(model.config), synthetic_rows(16, "val", seed=1)


def independent_type(sentence):
    """The synthetic grammar's own words (data_synthetic.RELATIONS / POSITIONS), read independently here."""
    words = sentence.lower().split()
    if " of " in f" {sentence} " or "above" in words or "below" in words:
        return "relation"
    return "position" if set(words) & {"left", "right", "top", "bottom", "middle"} else "attributes only"


def test_counts_equal_an_independent_count(model_and_rows):
    model, processor, rows = model_and_rows
    predictions = predict_selection(model, processor, rows, batch_size=5)  # RISTrainer.predict, 4 batches

    # Independently: one forward pass per row, masks at the original size, counted by hand.
    low, mid, ious = [], [], []
    for row in rows:
        inputs = processor(images=row["image"], text=row["sentence"])
        with torch.no_grad():
            out = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
        pred = processor.post_process_masks(
            out.logits, inputs["original_sizes"], threshold=model.config.mask_threshold
        )[0].numpy()
        gt = np.asarray(row["mask"]) > 0
        low.append(int(out.low_layer_index[0]))
        mid.append(int(out.mid_layer_index[0]))
        union = np.count_nonzero(pred | gt)
        ious.append(np.count_nonzero(pred & gt) / union if union else 1.0)
    assert predictions[:, 2].tolist() == low and predictions[:, 3].tolist() == mid
    assert len(set(low)) > 1 and len(set(mid)) > 1, "the test model should choose several layers"

    report = build_selection_report(
        rows["sentence"], rows["category_id"], predictions, (2, 3, 4), (5, 6, 7), synthetic=True
    )
    keys = {
        "overall": ["all"] * len(rows),
        "expression type": [independent_type(s) for s in rows["sentence"]],
        "expression length (words)": [
            {1: "1-2", 2: "1-2", 3: "3-4", 4: "3-4", 5: "5-6", 6: "5-6", 7: "7-8", 8: "7-8"}.get(len(s.split()), "9+")
            for s in rows["sentence"]
        ],
        "category": [f"{c} ({['circle', 'square', 'triangle', 'star'][c - 1]})" for c in rows["category_id"]],
    }
    for grouping, group_keys in keys.items():
        groups = report["groupings"][grouping]
        assert set(groups) == set(group_keys)
        for name, stats in groups.items():
            members = [i for i, k in enumerate(group_keys) if k == name]
            assert stats["n"] == len(members)
            assert stats["low"] == {layer: Counter(low[i] for i in members)[layer] for layer in (2, 3, 4)}
            assert stats["mid"] == {layer: Counter(mid[i] for i in members)[layer] for layer in (5, 6, 7)}
            assert stats["mIoU"] == pytest.approx(np.mean([ious[i] for i in members]))

    table = format_selection_markdown(report)
    overall = report["groupings"]["overall"]["all"]
    row = next(line for line in table.splitlines() if line.startswith("| all |"))
    assert row.split(" | ")[2] == f"{100 * overall['low'][2] / 16:.1f}% ({overall['low'][2]})"


def test_script_writes_table_json_and_chart(tmp_path, model_and_rows, capsys):
    model, processor, _ = model_and_rows
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "report"
    assert (
        script_main("selection_report")(
            [
                "--model",
                str(tmp_path / "ckpt"),
                "--split",
                "val",
                "--synthetic_num_eval",
                "6",
                "--synthetic_seed",
                "1",
                "--output_dir",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    saved = json.loads((out / "selection_report.json").read_text())
    assert saved["num_samples"] == 6 and saved["groupings"]["overall"]["all"]["n"] == 6
    assert sum(saved["groupings"]["overall"]["all"]["low"].values()) == 6
    assert "### expression type" in (out / "selection_report.md").read_text()
    assert (out / "selection_report.png").stat().st_size > 10_000
    assert re.search(r"\| all \| 6 \|", capsys.readouterr().out)


def test_fixed_layers_have_no_selection_to_report():
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(feature_selection="manual")).eval()
    with pytest.raises(ValueError, match="feature_selection='manual'"):
        predict_selection(model, ASDAProcessor.from_model_config(model.config), synthetic_rows(2, "val"))
