"""The optional convolutional branch of the ViT's patch embedding: added to the patch tokens only, built without
changing how the rest of the model starts, pooled so that a shape is seen wherever it lies in its patch, and
carried by checkpoints."""

import json

import pytest
import torch
import torch.nn.functional as F
from test_no_target_head import inputs_for, small_config

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.modeling_layers import ASDAConvPatchStem


def _pair(dim=8):
    torch.manual_seed(5)
    plain = ASDAForReferringSegmentation(small_config())
    after_plain = torch.rand(4)
    torch.manual_seed(5)
    stem = ASDAForReferringSegmentation(small_config(vision_conv_stem_dim=dim))
    after_stem = torch.rand(4)
    return plain, stem, torch.equal(after_plain, after_stem)


def test_the_rest_of_the_model_starts_as_without_the_stem_and_the_stem_adds_to_the_patch_tokens_only():
    plain, stem, same_rng_after = _pair()
    shared = plain.state_dict()
    extra = set(stem.state_dict()) - set(shared)
    assert extra and all(key.startswith("vision_stem.") for key in extra)
    assert all(torch.equal(value, stem.state_dict()[key]) for key, value in shared.items())
    assert same_rng_after  # training draws the same dropout masks and shuffles

    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        base = plain._vision_hidden_states(pixels)[0]
        with_stem = stem._vision_hidden_states(pixels)[0]
        vision = stem.vision_model
        branch = stem.vision_stem(pixels).flatten(2).transpose(1, 2)  # (2, 16 patches, width)
        expected = vision.embeddings(pixels)
        expected[:, 1:] += branch
        expected = vision.pre_layrnorm(expected)
    assert torch.allclose(with_stem, expected, atol=1e-6)
    assert torch.allclose(with_stem[:, 0], base[:, 0], atol=1e-6)  # the class token gets nothing
    assert not torch.allclose(with_stem[:, 1:], base[:, 1:], atol=1e-3)


def test_the_branch_starts_at_its_output_scale_and_every_part_gets_a_gradient():
    torch.manual_seed(0)
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(vision_conv_stem_dim=40))
    stem = model.vision_stem
    assert stem.proj.weight.std().item() == pytest.approx(0.4 / 80**0.5, rel=0.05)  # 80 pooled channels
    assert stem.convs[2].weight.std().item() == pytest.approx((3 * 40 * 9) ** -0.5, rel=0.05)
    out = stem(torch.randn(4, 3, 128, 128))
    assert out.shape == (4, 96, 8, 8)
    assert 0.3 < out.pow(2).mean().sqrt().item() < 0.5  # the linear patch embedding's size
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())


def test_a_shape_moved_within_its_patch_gives_the_same_pooled_features():
    """Average and max pooling over the patch: a square shifted by a stride-4 step inside the middle patch (its
    3x3 neighbourhood stays inside that patch) leaves every token unchanged, where the linear embedding changes."""
    torch.manual_seed(0)
    stem = ASDAConvPatchStem(8, 16, patch_size=16)
    embed = torch.nn.Conv2d(3, 16, 16, stride=16)

    def picture(top, left):
        image = torch.zeros(1, 3, 48, 48)
        image[:, :, top : top + 4, left : left + 4] = 1.0
        return image

    with torch.no_grad():
        a, b = picture(20, 20), picture(24, 24)
        assert torch.allclose(stem(a), stem(b), atol=1e-5)
        assert not torch.allclose(embed(a), embed(b), atol=1e-3)


def test_bad_stem_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="vision_conv_stem_dim=-1 must be >= 0"):
        small_config(vision_conv_stem_dim=-1)
    vision = ASDAConfig.tiny().vision_config.to_dict() | {"patch_size": 14}
    with pytest.raises(ValueError, match="patch size must be divisible by 4; vision_config.patch_size is 14"):
        ASDAConfig.tiny(vision_config=vision, image_size=112, mask_refiner_dim=0, vision_conv_stem_dim=8)
    assert ASDAConfig.vit_b16().vision_conv_stem_dim == 0  # the paper's model keeps its embedding


def test_a_stem_checkpoint_round_trips_through_automodel_in_a_fresh_offline_process(tmp_path):
    from hub_helpers import run_fresh
    from safetensors.torch import save_file

    _, model, _ = _pair()
    model.eval()
    with torch.no_grad():
        for p in model.vision_stem.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init values, so a stem left at its init would show
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    with torch.no_grad():
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["vision_conv_stem_dim"] == 8
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


def test_pooling_matches_an_independent_computation():
    torch.manual_seed(1)
    stem = ASDAConvPatchStem(4, 6, patch_size=8)
    pixels = torch.randn(2, 3, 16, 24)
    conv1, _, conv2, _ = stem.convs
    with torch.no_grad():
        features = F.gelu(conv2(F.gelu(conv1(pixels))))  # (2, 4, 4, 6)
        tokens = torch.zeros(2, 8, 2, 3)
        for i in range(2):
            for j in range(3):
                cell = features[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].flatten(2)
                tokens[:, :, i, j] = torch.cat([cell.mean(-1), cell.amax(-1)], dim=1)
        centred = tokens - tokens.mean(dim=(1, 2, 3), keepdim=True)
        normed = centred / (centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + stem.norm.eps).sqrt()
        expected = torch.einsum("oc,bchw->bohw", stem.proj.weight[:, :, 0, 0], normed) + stem.proj.bias[:, None, None]
        assert torch.allclose(stem(pixels), expected, atol=1e-5)
