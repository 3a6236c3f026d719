"""The no-target head: off by default (old checkpoints unchanged), trained with BCE, saved and reloaded
through AutoModel with the checkpoint's own code, and used by post-processing and run_ris.py."""

import json
import os
import subprocess
import sys

import fixtures_grefcoco as gfx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.image_processing_asda import ASDAImageProcessor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**kwargs):
    text = dict(
        vocab_size=49408,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=17,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0,
    )
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, patch_size=16)
    base = dict(
        text_config=text,
        vision_config=vision,
        projection_dim=16,
        image_size=64,
        low_candidate_layers=(1,),
        mid_candidate_layers=(2,),
        selector_hidden_dim=8,
        num_attention_heads=2,
        local_attention_mlp_dim=16,
        cross_attention_mlp_dim=16,
        decoder_hidden_dim=8,
        num_response_masks=4,
        coefficient_pooling="mean",
        hidden_dropout=0.0,
    )
    base.update(kwargs)
    return ASDAConfig(**base)


def inputs_for(processor, texts=("the red circle", "the dog")):
    images = [np.full((40, 60, 3), 90, np.uint8), np.full((50, 30, 3), 160, np.uint8)]
    masks = [np.zeros((40, 60), bool), np.zeros((50, 30), bool)]
    masks[0][5:20, 10:30] = True  # the first expression names something, the second nothing
    return processor(images=images, text=list(texts), masks=masks)


def test_head_is_off_by_default_and_changes_no_mask_logit():
    torch.manual_seed(0)
    plain = ASDAForReferringSegmentation(small_config()).eval()
    assert not plain.config.no_target_head and not any("no_target_head" in k for k in plain.state_dict())
    processor = ASDAProcessor.from_model_config(plain.config)
    batch = inputs_for(processor)
    model_inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    with torch.no_grad():
        before = plain(**model_inputs)
        plain.add_no_target_head()
        after = plain(**model_inputs)
    assert before.target_logits is None and after.target_logits.shape == (2,)
    assert torch.equal(before.logits, after.logits)  # the head only reads; masks are untouched
    assert plain.config.no_target_head


def test_loss_is_mask_loss_plus_weighted_bce_and_reaches_the_head():
    torch.manual_seed(0)
    model = ASDAForReferringSegmentation(small_config(no_target_head=True, no_target_loss_weight=0.7))
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    model_inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}
    model.eval()  # no dropout: two passes see the same network
    with_head = model(**model_inputs)
    from modeling_asda.modeling_loss import asda_mask_loss

    mask_loss = asda_mask_loss(with_head.logits, batch["labels"], model.config)
    bce = F.binary_cross_entropy_with_logits(with_head.target_logits, torch.tensor([1.0, 0.0]))
    assert with_head.loss.item() == pytest.approx((mask_loss + 0.7 * bce).item(), rel=1e-5)
    # Explicit target labels win over the ones read from the masks.
    flipped = model(**model_inputs, target_labels=torch.tensor([0.0, 1.0]))
    bce_flipped = F.binary_cross_entropy_with_logits(with_head.target_logits, torch.tensor([0.0, 1.0]))
    assert flipped.loss.item() == pytest.approx((mask_loss + 0.7 * bce_flipped).item(), rel=1e-5)
    flipped.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.no_target_head.parameters())


def test_post_process_empties_absent_targets_and_scores_each_mask():
    processor = ASDAImageProcessor(image_size=32)
    logits = torch.full((2, 1, 16, 16), 3.0)  # every pixel confidently foreground
    sizes = [(10, 20), (20, 10)]
    target_logits = torch.tensor([2.0, -1.0])  # present (p=0.88), absent (p=0.27)
    masks = processor.post_process_masks(logits, sizes, 0.35, target_logits=target_logits)
    assert masks[0].all() and not masks[1].any() and masks[1].shape == (20, 10)
    results = processor.post_process_masks(logits, sizes, 0.35, target_logits=target_logits, return_scores=True)
    assert [r["target_present"] for r in results] == [True, False]
    assert results[0]["score"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    # A stricter threshold turns the first one down too; probabilities of an absent target are all zero.
    strict = processor.post_process_masks(logits, sizes, 0.35, target_logits=target_logits, no_target_threshold=0.9)
    assert not strict[0].any()
    probs = processor.post_process_masks(logits, sizes, threshold=None, target_logits=target_logits)
    assert float(probs[1].max()) == 0.0 and float(probs[0].min()) > 0.9
    # Without target logits: masks as before, no score.
    plain = processor.post_process_masks(logits, sizes, 0.35, return_scores=True)
    assert plain[1]["score"] is None and plain[1]["target_present"] and plain[1]["mask"].all()
    with pytest.raises(ValueError, match="2 logit maps but 3 target logits"):
        processor.post_process_masks(logits, sizes, 0.35, target_logits=torch.zeros(3))


def test_head_reads_bounded_mask_statistics_so_an_empty_mask_does_not_fix_its_verdict():
    from modeling_asda.modeling_target import ASDANoTargetHead

    torch.manual_seed(0)
    head = ASDANoTargetHead(small_config()).eval()
    features, sentence = torch.randn(4, 16, 4, 4), torch.randn(4, 16)
    # Masks so empty that their logits are far below zero: the head must still tell the four samples apart.
    with torch.no_grad():
        logits = head(features, sentence, torch.full((4, 1, 8, 8), -60.0))
    assert float(logits.max() - logits.min()) > 0.05
    # The same samples with a mask of -60 or -600 everywhere: probabilities are 0 either way, so is the change.
    with torch.no_grad():
        assert torch.allclose(logits, head(features, sentence, torch.full((4, 1, 8, 8), -600.0)))


_FRESH = r"""
import json, sys, torch
from transformers import AutoModel
from safetensors.torch import load_file
folder = sys.argv[1]
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
batch = load_file(folder + "/batch.safetensors")
with torch.no_grad():
    out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
print(json.dumps({
    "module": type(model).__module__,
    "head": model.config.no_target_head,
    "logits": (out.logits - batch["logits"]).abs().max().item(),
    "target": (out.target_logits - batch["target_logits"]).abs().max().item(),
}))
"""


def test_head_checkpoint_round_trips_through_automodel_in_a_fresh_offline_process(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = ASDAForReferringSegmentation(small_config(no_target_head=True, no_target_threshold=0.4)).eval()
    with torch.no_grad():
        for p in model.no_target_head.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init values, so a head left at its init would show
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    with torch.no_grad():
        out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    assert "modeling_target.py" in os.listdir(folder)  # the head's code travels with the weights
    config = json.loads((folder / "config.json").read_text())
    assert config["no_target_head"] is True and config["no_target_threshold"] == 0.4
    save_file(
        {
            "pixel_values": batch["pixel_values"],
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "logits": out.logits.contiguous(),
            "target_logits": out.target_logits.contiguous(),
        },
        str(folder / "batch.safetensors"),
    )
    # Another working directory and no path to the repository: only the checkpoint's own code can run.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(folder)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Equal up to float rounding: a vectorised sum can start at another element in another process (its
    # alignment differs), which changed the target logits in their last bits on an AVX2 CPU. A head left at its
    # initialisation would differ by ~0.1.
    assert result["head"] is True and result["logits"] < 1e-5 and result["target"] < 1e-5, result
    assert result["module"].startswith("transformers_modules")


def test_run_ris_on_grefcoco_adds_the_head_and_reports_generalized_metrics(tmp_path):
    from test_run_ris import read_json, run_script

    root = gfx.write_grefcoco(str(tmp_path / "g"))
    out = tmp_path / "out"
    # No --do_train/--do_eval and no --eval_splits: trains, then evaluates every split but train.
    run_script([
        "--config_preset", "tiny", "--dataset_name", root, "--dataset_config", "grefcoco", "--split_by", "unc",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--output_dir", out,
    ])  # fmt: skip
    config = read_json(out / "config.json")
    assert config["no_target_head"] is True  # added because a training row names nothing
    results = read_json(out / "all_results.json")
    assert results["train_samples"] == 4
    assert results["eval_val_num_samples"] == 2 and "eval_val_N_acc" in results and "eval_val_T_acc" not in results
    assert results["eval_testA_num_samples"] == 1 and "eval_testA_T_acc" in results
    assert results["eval_testB_num_samples"] == 1
    table = (out / "results.md").read_text()
    for row in ("always no target", "all objects", "random object"):
        assert f"| baseline: {row} |" in table, row


def test_checkpoint_saved_before_the_head_existed_loads_and_runs_as_before():
    """tests/fixtures/asda_pre_refactor was saved by code that had no head: same logits, no target logits."""
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(__file__).parent / "fixtures" / "asda_pre_refactor"
    assert "no_target_head" not in json.loads((folder / "config.json").read_text())
    model, info = ASDAForReferringSegmentation.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.no_target_head is False
    expected = load_file(folder / "expected.safetensors")
    inputs = (expected["pixel_values"], expected["input_ids"], expected["attention_mask"])
    with torch.no_grad():
        out = model.eval()(*inputs)
    assert out.target_logits is None and "target_logits" not in out.keys()  # tuples keep their old layout
    # Computed on an AVX-512 CPU; an AVX2 one sums in another order (~1e-5).
    torch.testing.assert_close(out.logits, expected["logits"], rtol=0, atol=1e-4)
    # Fine-tuning it on gRefCOCO adds a head; the masks it paints do not move.
    model.add_no_target_head()
    with torch.no_grad():
        again = model(*inputs)
    assert torch.equal(again.logits, out.logits) and again.target_logits.shape == (2,)


def test_pipeline_says_when_an_expression_names_nothing():
    from modeling_asda.pipeline_asda import ReferringSegmentationPipeline

    torch.manual_seed(0)
    model = ASDAForReferringSegmentation(small_config(no_target_head=True)).eval()
    processor = ASDAProcessor.from_model_config(model.config)
    with torch.no_grad():  # strong response masks and positive coefficients, so the mask is not empty by itself;
        model.aligner.decoder.proj.bias.fill_(50.0)  # the test sets the verdict
        model.aligner.coefficients.convs[-1].bias.fill_(5.0)
    pipe = ReferringSegmentationPipeline(model=model, processor=processor, device="cpu")
    image = np.full((30, 40, 3), 120, np.uint8)
    verdicts = {}
    for bias in (-20.0, 20.0):
        with torch.no_grad():
            model.no_target_head.out.bias.fill_(bias)
            model.no_target_head.out.weight.zero_()
        verdicts[bias] = pipe(image, text="the green hexagon", mask_format="numpy")
    absent, present = verdicts[-20.0], verdicts[20.0]
    assert absent["target_present"] is False and not absent["mask"].any() and absent["mask"].shape == (30, 40)
    assert absent["score"] == pytest.approx(torch.sigmoid(torch.tensor(-20.0)).item())
    assert present["target_present"] is True and present["score"] == pytest.approx(1.0)
    assert present["mask"].any()


# ------------------------------------------------------------------------------- threshold sweep
def test_threshold_sweep_empties_the_masks_below_each_threshold():
    from modeling_asda.evaluation.target_threshold import sweep_thresholds

    # Four expressions: targeted with a good mask, targeted with an empty mask, no target with a mask painted,
    # no target with an empty mask; target probabilities 0.9, 0.6, 0.4, 0.1.
    predictions = {
        "score": np.array([0.9, 0.6, 0.4, 0.1]),
        "intersection": np.array([8, 0, 0, 0]),
        "union": np.array([10, 5, 4, 0]),
        "gt_area": np.array([9, 5, 0, 0]),
        "pred_area": np.array([9, 0, 4, 0]),
    }
    low, mid, high = sweep_thresholds(predictions, [0.05, 0.5, 0.95])
    # 0.05: nothing is gated. Targeted: 1 of 2 non-empty; no target: 1 of 2 empty. gIoU = (0.8 + 0 + 0 + 1) / 4.
    assert (low["T_acc"], low["N_acc"]) == (0.5, 0.5)
    assert low["gIoU"] == pytest.approx(1.8 / 4) and low["cIoU"] == pytest.approx(8 / 19)
    # 0.5: the painted no-target mask (0.4) is emptied and leaves the cumulative union.
    assert (mid["T_acc"], mid["N_acc"]) == (0.5, 1.0)
    assert mid["gIoU"] == pytest.approx(2.8 / 4) and mid["cIoU"] == pytest.approx(8 / 15)
    # 0.95: every mask is emptied; the targeted ones add their ground truth to the union.
    assert (high["T_acc"], high["N_acc"]) == (0.0, 1.0)
    assert high["gIoU"] == pytest.approx(2 / 4) and high["cIoU"] == 0.0


def test_threshold_script_runs_on_a_head_checkpoint_and_refuses_one_without(tmp_path, capsys):
    from asda_checkpoint import script_module

    script = script_module("no_target_threshold")
    torch.manual_seed(0)
    for name, head in (("head", True), ("plain", False)):
        config = small_config(no_target_head=head)
        ASDAForReferringSegmentation(config).save_pretrained(tmp_path / name)
        ASDAProcessor.from_model_config(config).save_pretrained(tmp_path / name)
    argv = ["--split", "val", "--synthetic_num_eval", "6", "--thresholds", "0.0", "1.01"]
    assert script.main(["--model", str(tmp_path / "head"), *argv, "--json", str(tmp_path / "sweep.json")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["threshold"] for row in rows] == [0.0, 1.01]
    assert rows[1]["N_acc"] == 1.0 and rows[1].get("T_acc", 0.0) == 0.0  # above every probability: all absent
    assert "| 1.01 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no no-target head"):
        script.main(["--model", str(tmp_path / "plain"), *argv])
