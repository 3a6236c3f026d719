"""Config keys that reproduce the published code's choices: each does what it says, against an independent computation."""

import pytest
import torch
import torch.nn.functional as F

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.modeling_layers import sine_position_encoding
from modeling_asda.tools.inspection import random_inputs
from modeling_asda.training.trainer import SelectionExplorationCallback

SMALL = dict(image_size=64, hidden_dropout=0.0)


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    return ASDAForReferringSegmentation(ASDAConfig.tiny(**SMALL, **overrides))


def same_weights(source, **overrides):
    """A model with other config switches but the weights of `source` (switches that add no parameters)."""
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(**SMALL, **overrides))
    model.load_state_dict(source.state_dict())
    return model


def inputs_of(model, seed=1):
    inputs = random_inputs(model.config, 3, seed)
    inputs.pop("labels")
    return inputs


def test_same_layer_scoring_uses_each_text_layers_eot_token():
    layers = dict(low_candidate_layers=(1, 2), mid_candidate_layers=(2, 3))
    model = build(selection_text_feature="same_layer", **layers).eval()
    selection = model.feature_selection
    assert selection.class_token_proj.bias is None  # Φ_T without bias, as published
    inputs = inputs_of(model)
    with torch.no_grad():
        out = model(**inputs)
        text = model.text_model(
            inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True
        )
        eot = inputs["input_ids"].argmax(-1)  # EOT has the largest CLIP id
        rows = torch.arange(3)
        vision = model._vision_hidden_states(inputs["pixel_values"])
        for level, candidates, probs in (
            ("low", (1, 2), out.low_selection_probs),
            ("mid", (2, 3), out.mid_selection_probs),
        ):
            scores = torch.stack(
                [text.hidden_states[k][rows, eot] * selection.class_token_proj(vision[k][:, 0]) for k in candidates], 1
            )
            net = getattr(selection, f"{level}_selector").net
            expected = net(scores.flatten(1)).softmax(-1)
            torch.testing.assert_close(probs, expected)
    with pytest.raises(ValueError, match="text encoder has 3 layers"):
        ASDAConfig.tiny(selection_text_feature="same_layer")  # candidates up to layer 7


def test_shared_linear_selector_scores_each_candidate_alone():
    model = build(selector="shared_linear").eval()
    net = model.feature_selection.low_selector.net
    assert tuple(net.weight.shape) == (1, model.config.projection_dim)
    scores = torch.randn(4, 3, model.config.projection_dim)
    logits = model.feature_selection.low_selector(scores)
    torch.testing.assert_close(logits, scores @ net.weight[0] + net.bias)
    # Permuting the candidates permutes the logits (no position-specific weights).
    torch.testing.assert_close(model.feature_selection.low_selector(scores[:, [2, 0, 1]]), logits[:, [2, 0, 1]])


def test_batch_norm_momentum_sets_how_fast_running_statistics_follow_the_batch():
    model = build(batch_norm_momentum=0.999).train()
    norm = model.fusion.out[0]
    captured = {}
    norm.register_forward_hook(lambda module, args, output: captured.setdefault("x", args[0].detach()))
    model(**inputs_of(model))
    batch_mean = captured["x"].mean(dim=(0, 2, 3))
    torch.testing.assert_close(norm.running_mean, 0.999 * batch_mean, rtol=1e-4, atol=1e-6)
    heads = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert heads and all(m.momentum == 0.999 for m in heads)
    assert build().fusion.out[0].momentum == 0.1


def test_relu_on_coarse_features_before_the_aligner():
    base = build().eval()
    model = same_weights(base, relu_coarse_features=True).eval()
    inputs = inputs_of(base)
    with torch.no_grad():
        plain = base(**inputs, output_feature_maps=True)
        relu = model(**inputs, output_feature_maps=True)
    torch.testing.assert_close(relu.coarse_features, F.relu(plain.coarse_features))
    assert not torch.allclose(relu.logits, plain.logits)


def test_unnormalised_local_positions():
    model = build(normalize_local_positions=False)
    grid = model.config.grid_size
    expected = sine_position_encoding(grid, grid, model.config.projection_dim, normalize=False)
    torch.testing.assert_close(model.aligner.position, expected)
    assert not torch.allclose(build().aligner.position, expected)
    # Another input size is computed on the fly with the same convention.
    tokens = torch.zeros(1, 9, model.config.projection_dim)
    torch.testing.assert_close(
        model.aligner.position_for(3, 3, tokens), sine_position_encoding(3, 3, 64, normalize=False)
    )


def test_unmasked_padding_words_change_the_output_only_when_there_is_padding():
    base = build().eval()
    model = same_weights(base, mask_padding_words=False).eval()
    inputs = inputs_of(base)
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, base(**inputs).logits)
        full = dict(
            inputs, input_ids=inputs["input_ids"][:, :6].clone(), attention_mask=torch.ones(3, 6, dtype=torch.long)
        )
        full["input_ids"][:, -1] = 49407  # every row ends in EOT at the last position: no padding
        torch.testing.assert_close(model(**full).logits, base(**full).logits)


def test_gumbel_exploration_samples_in_training_only_and_anneals():
    model = build().train()
    inputs = inputs_of(model)
    selection = model.feature_selection
    with torch.no_grad():
        reference = model(**inputs).low_selection_probs
        selection.exploration_noise = 5.0
        noisy = [model(**inputs).low_layer_index for _ in range(8)]
        assert len({tuple(index.tolist()) for index in noisy}) > 1  # the argmax now varies between calls
        model.eval()
        torch.testing.assert_close(model(**inputs).low_selection_probs, reference)  # evaluation: no noise
    callback = SelectionExplorationCallback(scale=2.0, fraction=0.5)
    assert [callback.noise_at(step, 100) for step in (0, 25, 50, 90)] == [2.0, 1.0, 0.0, 0.0]

    class State:
        global_step, max_steps = 10, 100

    callback.on_step_begin(None, State(), None, model=model)
    assert selection.exploration_noise == pytest.approx(2.0 * (1 - 10 / 50))
    callback.on_train_end(None, State(), None, model=model)
    assert selection.exploration_noise == 0.0
