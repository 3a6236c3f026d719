"""Behaviour of ASDAForReferringSegmentation: sizes, gradients, per-sample selection, ablations, losses."""

import math

import numpy as np
import pytest
import torch

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.modeling_loss import dice_loss, sigmoid_focal_loss

SOT, EOT = 49406, 49407


def text_inputs(token_lists, length=17):
    """CLIP-style ids [SOT, tokens..., EOT, 0...] and their attention mask, without the processor."""
    ids = torch.zeros(len(token_lists), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate(token_lists):
        seq = [SOT, *tokens, EOT]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def random_batch(config, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    tokens = [torch.randint(300, 40000, (3 + row,), generator=generator).tolist() for row in range(batch)]
    ids, mask = text_inputs(tokens, config.max_text_length)
    labels = (torch.rand(batch, size, size, generator=generator) > 0.6).float()
    return pixels, ids, mask, labels


# ------------------------------------------------------------------------------------------- size
def test_vit_b16_parameter_count_matches_independent_count_and_spec():
    config = ASDAConfig.vit_b16()
    with torch.device("meta"):
        model = ASDAForReferringSegmentation(config)
    groups = {}
    for name, param in model.named_parameters():
        groups[name.split(".")[0]] = groups.get(name.split(".")[0], 0) + param.numel()

    # Independent count of a CLIP transformer layer: qkvo + 2 LayerNorms + MLP.
    def clip_layer(d, ff):
        return 4 * (d * d + d) + 2 * 2 * d + (d * ff + ff) + (ff * d + d)

    grid = 416 // 16
    vision = 3 * 768 * 16 * 16 + 768 + (grid * grid + 1) * 768 + 2 * 768 + 12 * clip_layer(768, 3072)
    text = 49408 * 512 + 77 * 512 + 12 * clip_layer(512, 2048) + 2 * 512
    assert groups["vision_model"] == vision
    assert groups["text_model"] == text
    # The published model: CLIP visual 86.2 M (ours: position table resized to 26x26, no pooled-CLS projection/post-LN)
    # and CLIP text 63.1 M.
    assert abs(groups["vision_model"] / 1e6 - 86.2) < 0.1
    assert abs(groups["text_model"] / 1e6 - 63.1) < 0.1

    def conv(cin, cout, k, bias=False):
        return cin * cout * k * k + (cout if bias else 0)

    def cna(cin, cout, k):  # conv + BatchNorm affine
        return conv(cin, cout, k) + 2 * cout

    C, Dv, N = 512, 768, 32
    fusion = cna(Dv, C, 1) + (C * C + C) + 2 * C + 2 * C
    selection = (Dv * C + C) + 2 * (3 * C * 3 + 3)
    sfa = (
        cna(C, C, 1)
        + cna(C, C, 3)
        + conv(Dv, Dv // 2, 2, True)
        + cna(Dv // 2, C, 1)
        + cna(C, C, 3)
        + conv(Dv, Dv // 2, 2, True)
        + 2 * (Dv // 2)
        + conv(Dv // 2, Dv // 4, 2, True)
        + cna(Dv // 4, C, 1)
        + cna(C, C, 3)
        + 3 * cna(C, C, 1)
        + cna(C, C, 3)
    )
    attn = 4 * (C * C + C)
    local = 2 * (2 * 2 * C + attn + (C * 512 + 512) + (512 * C + C)) + 2 * C
    decoder = cna(C, 256, 3) + 2 * cna(256, 256, 3) + conv(256, N, 1, True)
    cross = 3 * 2 * C + attn + (C * 2048 + 2048) + (2048 * C + C)
    coefficients = 2 * cna(C, C, 3) + conv(C, N, 1, True) + grid * grid * N * N
    heads = C * 512 + fusion + selection + sfa + local + decoder + cross + coefficients  # + text projection
    total = sum(groups.values())
    assert total == vision + text + heads
    # The published model has ~193 M parameters of which ~6.8 M are never used by its forward pass;
    # ours keeps only live modules, so it must be smaller than the published total minus that.
    assert total < (193 - 6.8) * 1e6
    assert 170e6 < total < 186.2e6


def test_every_parameter_gets_a_gradient_vit_b16():
    torch.manual_seed(0)
    config = ASDAConfig.vit_b16(selection="straight_through")
    model = ASDAForReferringSegmentation(config).train()
    pixels, ids, mask, labels = random_batch(config, batch=2)
    model(pixels, ids, mask, labels=labels).loss.backward()
    dead = [name for name, param in model.named_parameters() if param.grad is None]
    assert dead == []
    # Not only present: the selector and Φ_T really move.
    assert model.feature_selection.low_selector.net.weight.grad.abs().sum() > 0
    assert model.feature_selection.class_token_proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("selection", ["straight_through", "hard", "soft"])
def test_selector_gradients_by_selection_mode(selection):
    torch.manual_seed(0)
    config = ASDAConfig.tiny(selection=selection)
    model = ASDAForReferringSegmentation(config).train()
    pixels, ids, mask, labels = random_batch(config, batch=3)
    model(pixels, ids, mask, labels=labels).loss.backward()
    selector_params = [
        model.feature_selection.class_token_proj.weight,
        model.feature_selection.low_selector.net.weight,
        model.feature_selection.mid_selector.net.weight,
    ]
    if selection == "hard":  # the published behaviour: argmax only, no gradient reaches the selector
        assert all(p.grad is None for p in selector_params)
    else:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in selector_params)


def _model_with_varied_selection():
    """A tiny model whose low selection differs between expressions of one image (searched over seeds)."""
    config = ASDAConfig.tiny()
    image = torch.randn(1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(1))
    token_lists = [[320 + 7 * i, 1000 + 13 * i, 2000 + i] for i in range(8)]
    ids, mask = text_inputs(token_lists, config.max_text_length)
    for seed in range(20):
        torch.manual_seed(seed)
        model = ASDAForReferringSegmentation(config).eval()
        with torch.no_grad():
            out = model(image.expand(len(token_lists), -1, -1, -1), ids, mask)
        if len(set(out.low_layer_index.tolist())) > 1:
            return model, image, ids, mask, out
    raise AssertionError("no seed gave expression-dependent selection")


def test_selection_is_per_sample_and_uses_the_chosen_layers():
    model, image, ids, mask, out = _model_with_varied_selection()
    batch = ids.shape[0]
    assert out.low_layer_index.shape == (batch,) and out.mid_layer_index.shape == (batch,)
    assert set(out.low_layer_index.tolist()) <= set(model.config.low_candidate_layers)
    assert torch.allclose(out.low_selection_probs.sum(-1), torch.ones(batch))
    assert torch.equal(out.low_layer_index, model.config.low_candidate_layers[0] + out.low_selection_probs.argmax(-1))

    # Each sample's mask equals that of a fixed-layer model using exactly the layers it chose.
    state = model.state_dict()
    for row in range(batch):
        layers = (int(out.low_layer_index[row]), int(out.mid_layer_index[row]))
        manual = ASDAForReferringSegmentation(ASDAConfig.tiny(feature_selection="manual", manual_layers=layers)).eval()
        missing, unexpected = manual.load_state_dict(state, strict=False)
        assert missing == [] and all(key.startswith("feature_selection.") for key in unexpected)
        with torch.no_grad():
            single = manual(image, ids[row : row + 1], mask[row : row + 1]).logits
        torch.testing.assert_close(single, out.logits[row : row + 1], rtol=1e-4, atol=1e-4)


def test_straight_through_forward_equals_hard_forward():
    torch.manual_seed(0)
    config = ASDAConfig.tiny()
    model = ASDAForReferringSegmentation(config).eval()
    pixels, ids, mask, _ = random_batch(config, batch=3)
    with torch.no_grad():
        straight = model(pixels, ids, mask).logits
        model.feature_selection.selection = "hard"
        hard = model(pixels, ids, mask).logits
    assert torch.equal(straight, hard)


# ----------------------------------------------------------------------------------- ablations
ABLATIONS = {
    "a_baseline": dict(feature_selection="none", aligner="none"),
    "b_manual_concat": dict(feature_selection="manual", fusion="concat", aligner="none"),
    "c_afs_concat": dict(feature_selection="adaptive", fusion="concat", aligner="none"),
    "d_afs_sfa": dict(feature_selection="adaptive", fusion="sfa", aligner="none"),
    "e_single_branch": dict(aligner="single"),
    "f_full": dict(aligner="dual"),
    "selector_mlp": dict(selector="mlp"),
    "selector_conv": dict(selector="conv"),
    "soft_selection": dict(selection="soft"),
    "n1_nc8_sigmoid_flatten": dict(
        num_local_attention_layers=1,
        num_response_masks=8,
        response_activation="sigmoid",
        coefficient_pooling="flatten",
    ),
    "n0": dict(num_local_attention_layers=0),
    "sfa_paper_width": dict(sfa_hidden_dim=32),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_forward_backward_shapes(name):
    torch.manual_seed(0)
    config = ASDAConfig.tiny(**ABLATIONS[name])
    model = ASDAForReferringSegmentation(config).train()
    pixels, ids, mask, labels = random_batch(config, batch=2)
    out = model(pixels, ids, mask, labels=labels, output_feature_maps=True)
    side = config.mask_size
    assert out.logits.shape == (2, 1, side, side)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    grid, dim = config.grid_size, config.projection_dim
    assert out.coarse_features.shape == (2, dim, grid, grid)
    if config.aligner == "none":
        assert out.fine_features is None
    else:
        assert out.fine_features.shape == (2, dim, grid, grid)
    if config.aligner == "dual":
        decoder_side = config.decoder_mask_size  # the tiny preset's refiner doubles the final logits
        assert out.response_masks.shape == (2, config.num_response_masks, decoder_side, decoder_side)
        assert out.coefficients.shape == (2, config.num_response_masks)
        assert out.coefficients.abs().max() <= 1
        recombined = torch.einsum("bc,bchw->bhw", out.coefficients, out.response_masks)
        torch.testing.assert_close(recombined, out.decoder_logits[:, 0])
    if config.feature_selection == "none":
        assert out.low_layer_index is None
    else:
        assert out.low_layer_index.shape == (2,)


def test_mean_pooling_head_is_independent_of_grid_checks_and_flatten_rejects_other_grid():
    from modeling_asda.modeling_aligner import ASDACoefficientHead

    head = ASDACoefficientHead(16, 4, grid_size=4, pooling="flatten")
    with pytest.raises(ValueError, match="coefficient_pooling='mean'"):
        head(torch.randn(1, 16, 5, 5))
    mean_head = ASDACoefficientHead(16, 4, grid_size=4, pooling="mean")
    assert mean_head(torch.randn(2, 16, 5, 5)).shape == (2, 4)


# ---------------------------------------------------------------------------------------- losses
def _reference_focal(logits, targets, alpha, gamma):
    total = 0.0
    for x, t in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1 / (1 + math.exp(-x))
        ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
        p_t = p * t + (1 - p) * (1 - t)
        weight = (alpha * t + (1 - alpha) * (1 - t)) if alpha >= 0 else 1.0
        total += weight * (1 - p_t) ** gamma * ce
    return total / logits.numel()


def _reference_dice(logits, targets, smooth=1.0):
    losses = []
    for x_row, t_row in zip(
        logits.reshape(logits.shape[0], -1).tolist(), targets.reshape(targets.shape[0], -1).tolist()
    ):
        p = [1 / (1 + math.exp(-x)) for x in x_row]
        inter = sum(a * b for a, b in zip(p, t_row))
        losses.append(1 - (2 * inter + smooth) / (sum(p) + sum(t_row) + smooth))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("alpha,gamma", [(-1.0, 0.0), (0.25, 2.0), (0.5, 1.0)])
def test_focal_loss_equals_independent_computation(alpha, gamma):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 3, 4, generator=generator, dtype=torch.float64) * 3
    targets = (torch.rand(2, 1, 3, 4, generator=generator) > 0.5).double()
    assert sigmoid_focal_loss(logits, targets, alpha, gamma).item() == pytest.approx(
        _reference_focal(logits, targets, alpha, gamma), rel=1e-10
    )


def test_dice_loss_equals_independent_computation():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 1, 4, 4, generator=generator, dtype=torch.float64) * 2
    targets = (torch.rand(3, 1, 4, 4, generator=generator) > 0.5).double()
    targets[2] = 0  # an empty mask
    assert dice_loss(logits, targets).item() == pytest.approx(_reference_dice(logits, targets), rel=1e-10)


def test_model_loss_combines_weighted_terms_on_nearest_resized_labels():
    torch.manual_seed(0)
    # The published head (no refiner): one loss on logits smaller than the labels.
    config = ASDAConfig.tiny(focal_weight=2.0, dice_weight=0.5, focal_alpha=0.25, focal_gamma=2.0, mask_refiner_dim=0)
    model = ASDAForReferringSegmentation(config).eval()
    pixels, ids, mask, labels = random_batch(config, batch=2)
    with torch.no_grad():
        out = model(pixels, ids, mask, labels=labels)
    # Labels are at the input size, logits smaller: nearest resizing keeps every stride-th pixel.
    stride = config.image_size // config.mask_size
    assert stride == 2
    small = labels[:, None, ::stride, ::stride].double()
    logits = out.logits.double()
    expected = 2.0 * _reference_focal(logits, small, 0.25, 2.0) + 0.5 * _reference_dice(logits, small)
    assert out.loss.item() == pytest.approx(expected, rel=1e-4)
    # Labels already at the logits size give the same loss.
    with torch.no_grad():
        same = model(pixels, ids, mask, labels=labels[:, ::stride, ::stride]).loss
    assert same.item() == pytest.approx(out.loss.item(), rel=1e-6)


# ------------------------------------------------------------------------------------ bad inputs
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ASDAForReferringSegmentation(ASDAConfig.tiny()).eval()


def test_bad_inputs_give_clear_errors(tiny_model):
    config = tiny_model.config
    pixels, ids, mask, labels = random_batch(config, batch=2)
    with pytest.raises(ValueError, match="labels have spatial size"):
        tiny_model(pixels, ids, mask, labels=labels[:, :100, :100])
    with pytest.raises(ValueError, match="batch=2"):
        tiny_model(pixels, ids, mask, labels=labels[:1])
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        tiny_model(pixels, ids, mask, labels=labels * 255)
    with pytest.raises(ValueError, match="128x128"):
        tiny_model(torch.randn(2, 3, 96, 96), ids, mask)
    with pytest.raises(ValueError, match="2 images but 1 expressions"):
        tiny_model(pixels, ids[:1], mask[:1])
    no_eot = ids.clone()
    no_eot[1][no_eot[1] == EOT] = 0
    with pytest.raises(ValueError, match="rows \\[1\\] contain no end-of-text"):
        tiny_model(pixels, no_eot, mask)
    with pytest.raises(ValueError, match="attend to no token"):
        tiny_model(pixels, ids, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="input_ids must lie in"):
        tiny_model(pixels, ids + 60000, mask)
    with pytest.raises(ValueError, match="pixel_values must be"):
        tiny_model(pixels[0], ids, mask)


def test_config_rejects_bad_values_with_the_field_name():
    with pytest.raises(ValueError, match="ASDAConfig.selection"):
        ASDAConfig.tiny(selection="gumbel")
    with pytest.raises(ValueError, match="low_candidate_layers"):
        ASDAConfig.tiny(low_candidate_layers=(7, 8, 9))  # tiny has 8 vision layers
    with pytest.raises(ValueError, match="image_size"):
        ASDAConfig.tiny(image_size=100)


def test_vision_position_init_is_a_scaled_sine_cosine_table_and_loaded_tables_win(tmp_path):
    scale, grid, dim = 10.0, 8, 96  # tiny: 128 / 16 patches, width 96
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(vision_position_init_scale=scale))
    table = model.vision_model.embeddings.position_embedding.weight.detach().numpy()
    # Independent: row 1 + y * grid + x holds [sin(y w), cos(y w), sin(x w), cos(x w)], w_k = 10000^(-k / (dim / 4)).
    omega = 10000.0 ** (-np.arange(dim // 4) / (dim // 4))
    expected = np.zeros((1 + grid * grid, dim))
    for y in range(grid):
        for x in range(grid):
            expected[1 + y * grid + x] = np.concatenate(
                [np.sin(y * omega), np.cos(y * omega), np.sin(x * omega), np.cos(x * omega)]
            )
    np.testing.assert_allclose(table, scale * expected, atol=1e-5)

    # 0 keeps CLIP's random table (std 0.02, no structure): the vit_b16 default, whose table comes from CLIP.
    assert (
        ASDAConfig.vit_b16().vision_position_init_scale == 0 and ASDAConfig.tiny().vision_position_init_scale == scale
    )
    random_init = ASDAForReferringSegmentation(ASDAConfig.tiny(vision_position_init_scale=0))
    assert abs(random_init.vision_model.embeddings.position_embedding.weight.std().item() - 0.02) < 0.004

    # A saved (here: trained-looking) table is what from_pretrained returns, not a fresh sine table.
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.weight.mul_(0.5).add_(1.0)
    model.save_pretrained(tmp_path)
    loaded = ASDAForReferringSegmentation.from_pretrained(tmp_path)
    assert loaded.config.vision_position_init_scale == scale
    torch.testing.assert_close(
        loaded.vision_model.embeddings.position_embedding.weight,
        model.vision_model.embeddings.position_embedding.weight,
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="vision_position_init_scale"):
        ASDAConfig.tiny(vision_position_init_scale=-1.0)


def test_padding_words_do_not_change_the_mask(tiny_model):
    """Padding is masked in every word attention: ids after EOT may hold anything."""
    config = tiny_model.config
    pixels, ids, mask, _ = random_batch(config, batch=2)
    garbage = ids.clone()
    garbage[mask == 0] = 555
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(pixels, ids, mask).logits, tiny_model(pixels, garbage, mask).logits)


# ------------------------------------------------------------------------------- implementations
def test_eager_and_sdpa_attention_agree_and_gradient_checkpointing_matches():
    torch.manual_seed(0)
    config = ASDAConfig.tiny(hidden_dropout=0.0)
    sdpa = ASDAForReferringSegmentation(ASDAConfig.tiny(hidden_dropout=0.0, attn_implementation="sdpa")).eval()
    eager = ASDAForReferringSegmentation(ASDAConfig.tiny(hidden_dropout=0.0, attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config.vision_config._attn_implementation == "sdpa"
    assert eager.config.text_config._attn_implementation == "eager"
    pixels, ids, mask, labels = random_batch(config, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(
            sdpa(pixels, ids, mask).logits, eager(pixels, ids, mask).logits, rtol=1e-4, atol=1e-4
        )

    def grads(model):
        model.zero_grad()
        model(pixels, ids, mask, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    # BatchNorm in eval mode and no dropout: checkpointing must reproduce the same gradients.
    reference = grads(sdpa)
    sdpa.activation_checkpointing_enable()
    sdpa.train()
    for module in sdpa.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    assert sdpa.vision_model.encoder.layers[0].gradient_checkpointing
    assert sdpa.aligner.word_attention.gradient_checkpointing
    checkpointed = grads(sdpa)
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_forward_is_close_to_fp32(tiny_model):
    pixels, ids, mask, _ = random_batch(tiny_model.config, batch=2)
    with torch.no_grad():
        full = tiny_model(pixels, ids, mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = tiny_model(pixels, ids, mask).logits
    assert half.dtype == torch.bfloat16
    agreement = ((half.float() > 0) == (full > 0)).float().mean()
    assert agreement > 0.95
