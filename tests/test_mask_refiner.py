"""The optional mask refiner: input-resolution logits from the pixels, trained without touching the rest of the
model, learning edges the decoder's logits lack, and carried by checkpoints."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from asda_checkpoint import trained_checkpoint  # noqa: F401 (fixture)
from test_no_target_head import inputs_for, small_config

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.modeling_loss import asda_mask_loss
from modeling_asda.modeling_refiner import ASDAMaskRefiner


def _pair():
    """The same seed with and without the refiner; the refiner is built last, so the rest starts identical."""
    torch.manual_seed(3)
    plain = ASDAForReferringSegmentation(small_config())
    torch.manual_seed(3)
    refined = ASDAForReferringSegmentation(small_config(mask_refiner_dim=8))
    return plain, refined


def test_the_rest_of_the_model_starts_and_trains_exactly_as_without_the_refiner():
    plain, refined = _pair()
    shared = plain.state_dict()
    extra = set(refined.state_dict()) - set(shared)
    assert extra and all(key.startswith("mask_refiner.") for key in extra)
    assert all(torch.equal(value, refined.state_dict()[key]) for key, value in shared.items())

    processor = ASDAProcessor.from_model_config(plain.config)
    batch = inputs_for(processor)
    model_inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}
    out_plain = plain(**model_inputs)
    out_refined = refined(**model_inputs, output_feature_maps=True)
    assert torch.equal(out_refined.decoder_logits, out_plain.logits)
    out_plain.loss.backward()
    out_refined.loss.backward()
    # The refined loss reaches the refiner only: every other gradient is the plain model's.
    for name, parameter in plain.named_parameters():
        other = refined.get_parameter(name)
        if parameter.grad is None:
            assert other.grad is None, name
        else:
            torch.testing.assert_close(other.grad, parameter.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in refined.mask_refiner.parameters())


def test_logits_are_at_the_input_size_and_the_loss_adds_the_refined_term():
    _, model = _pair()
    model.eval()
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    model_inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}
    out = model(**model_inputs, output_feature_maps=True)
    assert model.config.mask_size == 64 and model.config.decoder_mask_size == 32
    assert out.logits.shape == (2, 1, 64, 64) and out.decoder_logits.shape == (2, 1, 32, 32)
    expected = asda_mask_loss(out.decoder_logits, batch["labels"], model.config)
    expected = expected + asda_mask_loss(out.logits, batch["labels"], model.config)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Post-processing reads any resolution: masks come back at each image's size.
    masks = processor.post_process_masks(out.logits, batch["original_sizes"], threshold=0.35)
    assert [tuple(m.shape) for m in masks] == [(40, 60), (50, 30)]


def test_the_refiner_learns_sharp_edges_from_the_pixels():
    """A blurred, half-resolution mask of a square plus the picture of the square: after a short fit the
    refined mask is much closer to the square than the up-sampled blurred one."""
    torch.manual_seed(0)
    config = small_config(mask_refiner_dim=8)
    refiner = ASDAMaskRefiner(config)
    generator = torch.Generator().manual_seed(0)

    def batch(n=16):
        pixels = torch.full((n, 3, 64, 64), -1.0) + 0.2 * torch.randn(n, 3, 64, 64, generator=generator)
        masks = torch.zeros(n, 1, 64, 64)
        for i in range(n):
            y, x = torch.randint(4, 30, (2,), generator=generator).tolist()
            side = int(torch.randint(13, 30, (1,), generator=generator))
            masks[i, :, y : y + side, x : x + side] = 1
            pixels[i, :, y : y + side, x : x + side] += 2.0
        blurred = F.avg_pool2d(F.avg_pool2d(masks, 2), 7, stride=1, padding=3, count_include_pad=False)
        return pixels, 8 * (blurred - 0.5), masks

    def iou(logits, masks):
        pred = logits > 0
        return ((pred & (masks > 0)).sum() / (pred | (masks > 0)).sum()).item()

    optimizer = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(150):
        pixels, coarse, masks = batch()
        loss = asda_mask_loss(refiner(pixels, coarse), masks, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    refiner.eval()
    pixels, coarse, masks = batch(64)
    with torch.no_grad():
        refined = refiner(pixels, coarse)
    upsampled = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
    assert iou(upsampled, masks) < 0.85
    assert iou(refined, masks) > max(0.93, iou(upsampled, masks) + 0.1)


def test_bad_refiner_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="mask_refiner_dim=-1 must be >= 0"):
        small_config(mask_refiner_dim=-1)
    with pytest.raises(ValueError, match="multiple of the decoder's mask size"):
        small_config(mask_refiner_dim=8, decoder_upsampling=32)  # 128x128 decoder logits for a 64 input
    assert ASDAConfig.tiny(mask_refiner_dim=0).mask_size == 64 and ASDAConfig.tiny().mask_size == 128
    assert ASDAConfig.vit_b16().mask_refiner_dim == 0  # the paper's model keeps its head


def test_a_refiner_checkpoint_round_trips_through_automodel_in_a_fresh_offline_process(tmp_path):
    from hub_helpers import run_fresh
    from safetensors.torch import save_file

    _, model = _pair()
    model.eval()
    with torch.no_grad():
        for p in model.mask_refiner.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init values, so a refiner left at its init would show
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    with torch.no_grad():
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    assert "modeling_refiner.py" in os.listdir(folder)
    assert json.loads((folder / "config.json").read_text())["mask_refiner_dim"] == 8
    tensors = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    save_file({**tensors, "logits": logits.contiguous()}, str(folder / "batch.safetensors"))
    result = run_fresh(
        f"""
        import json, torch
        from safetensors.torch import load_file
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        batch = load_file({str(folder / "batch.safetensors")!r})
        with torch.no_grad():
            out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        print(json.dumps({{"module": type(model).__module__, "equal": torch.equal(out.logits, batch["logits"])}}))
        """,
        tmp_path,
    )
    assert result["equal"] and result["module"].startswith("transformers_modules")


def test_run_ris_trains_the_rest_of_the_model_exactly_as_without_the_refiner(tmp_path):
    """Through the Trainer, with clipping active on every step: the refiner is clipped on its own, so the
    shared weights end bitwise equal to a run without it, whatever the refiner's learning rate."""
    from safetensors.torch import load_file
    from test_run_ris import TINY_RUN, run_script

    common = TINY_RUN + ["--synthetic_num_train", "48", "--num_train_epochs", "1", "--max_grad_norm", "0.05"]
    common += ["--do_train", "--do_eval", "false", "--save_strategy", "no", "--seed", "5"]
    weights = {}
    for name, width, ratio in (("plain", 0, 1), ("refined", 8, 1), ("refined_fast", 8, 3)):
        extra = ["--config_overrides", f"mask_refiner_dim={width}", "--refiner_lr_ratio", str(ratio)]
        out = tmp_path / name
        run_script(common + extra + ["--output_dir", out])
        weights[name] = load_file(str(out / "model.safetensors"))
        state = json.loads((out / "trainer_state.json").read_text())
        weights[name + "_norms"] = [h["grad_norm"] for h in state["log_history"] if "grad_norm" in h]
    plain, refined = weights["plain"], weights["refined"]
    assert set(refined) - set(plain) and all(k.startswith("mask_refiner.") for k in set(refined) - set(plain))
    assert len(weights["plain_norms"]) == 6 and min(weights["plain_norms"]) > 0.05  # every step was clipped
    assert weights["refined_norms"] == weights["plain_norms"]
    for refined in (weights["refined"], weights["refined_fast"]):
        different = [key for key, value in plain.items() if not torch.equal(value, refined[key])]
        assert not different, different[:5]
    assert weights["refined_fast_norms"] == weights["plain_norms"]
    refiner_keys = [key for key in weights["refined"] if key.startswith("mask_refiner.")]
    assert any(not torch.equal(weights["refined"][key], weights["refined_fast"][key]) for key in refiner_keys)


def test_a_checkpoint_without_refiner_loads_with_a_fresh_one_and_a_refiner_checkpoint_loads_exactly(tmp_path):
    torch.manual_seed(0)
    plain = ASDAForReferringSegmentation(small_config())
    plain.save_pretrained(tmp_path / "plain")
    grown = ASDAForReferringSegmentation.from_pretrained(tmp_path / "plain", mask_refiner_dim=8)
    assert all(torch.equal(value, grown.state_dict()[key]) for key, value in plain.state_dict().items())
    first = grown.mask_refiner.convs[0][0].weight
    # Initialised as a fan-in conv (Kaiming), not left at zeros or at the checkpoint's absence.
    assert abs(float(first.std()) - (2.0 / first[0].numel()) ** 0.5) < 0.3 * (2.0 / first[0].numel()) ** 0.5
    grown.save_pretrained(tmp_path / "grown")
    again = ASDAForReferringSegmentation.from_pretrained(tmp_path / "grown")
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in grown.state_dict().items())


def test_paired_logits_scores_both_outputs_on_the_same_rows(trained_checkpoint, tmp_path, capsys):  # noqa: F811
    from asda_checkpoint import script_main, synthetic_rows

    from modeling_asda.evaluation.paired_logits import paired_counts

    folder, model, processor = trained_checkpoint
    rows = synthetic_rows(12, "val")
    counts = paired_counts(model, processor, rows, batch_size=5)
    assert [len(c[0]) for c in counts.values()] == [12, 12]
    # Independent count of the final masks: the model's logits post-processed one row at a time.
    for k in range(12):
        encoded = processor(images=[rows[k]["image"]], text=[rows[k]["sentence"]])
        with torch.no_grad():
            logits = model(encoded["pixel_values"], encoded["input_ids"], encoded["attention_mask"]).logits
        image = rows[k]["image"]
        mask = processor.post_process_masks(logits, [(image.height, image.width)], model.config.mask_threshold)[0]
        gt = np.asarray(rows[k]["mask"]) > 0
        assert counts["final"][0][k] == int((mask.numpy() & gt).sum())
        assert counts["final"][1][k] == int((mask.numpy() | gt).sum())
    # Without a refiner both outputs are the same tensor.
    torch.manual_seed(0)
    plain = ASDAForReferringSegmentation(ASDAConfig.tiny(mask_refiner_dim=0)).eval()
    same = paired_counts(plain, ASDAProcessor.from_model_config(plain.config), rows.select(range(4)))
    assert same["decoder"] == same["final"]
    assert script_main("paired_logits")(["--model", str(folder), "--split", "val", "--synthetic_num_eval", "6"]) == 0
    table = capsys.readouterr().out
    rows_out = [line for line in table.splitlines() if line.startswith(("| decoder", "| final"))]
    assert len(rows_out) == 2 and all(sum(int(c) for c in r.strip("|").split("|")[5:]) == 6 for r in rows_out)
