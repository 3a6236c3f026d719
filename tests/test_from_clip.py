"""Building ASDA from a CLIPModel checkpoint: every tensor copied, the position table resized once."""

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from modeling_asda import ASDAForReferringSegmentation
from modeling_asda.modeling_asda import UNUSED_CLIP_KEYS


def bilinear_resize_reference(grid: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize (align_corners=False) of an (g, g, D) array, written out by hand."""
    old = grid.shape[0]
    scale = old / size
    out = np.empty((size, size, grid.shape[2]), dtype=np.float64)

    def taps(index):
        src = max((index + 0.5) * scale - 0.5, 0.0)
        low = min(int(np.floor(src)), old - 1)
        high = min(low + 1, old - 1)
        return low, high, src - low

    for y in range(size):
        y0, y1, wy = taps(y)
        for x in range(size):
            x0, x1, wx = taps(x)
            top = (1 - wx) * grid[y0, x0] + wx * grid[y0, x1]
            bottom = (1 - wx) * grid[y1, x0] + wx * grid[y1, x1]
            out[y, x] = (1 - wy) * top + wy * bottom
    return out


@pytest.fixture(scope="module")
def saved_clip_vit_b16(tmp_path_factory):
    """A random CLIPModel with openai/clip-vit-base-patch16 shapes, saved like a Hub checkpoint."""
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            max_position_embeddings=77,
            vocab_size=49408,
            eos_token_id=2,
            hidden_act="quick_gelu",
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=16,
            image_size=224,
            hidden_act="quick_gelu",
        ),
        projection_dim=512,
    )
    folder = tmp_path_factory.mktemp("clip-vit-b16")
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_from_clip_copies_every_tensor_and_resizes_positions(saved_clip_vit_b16):
    clip_state = CLIPModel.from_pretrained(saved_clip_vit_b16).state_dict()
    model = ASDAForReferringSegmentation.from_clip(str(saved_clip_vit_b16), image_size=416)
    state = model.state_dict()
    assert model.config.grid_size == 26
    assert model.config.text_config.eos_token_id == 49407  # the legacy eos id 2 is corrected

    position_key = "vision_model.embeddings.position_embedding.weight"
    copied = 0
    for key, value in clip_state.items():
        if key in UNUSED_CLIP_KEYS:
            assert key not in state
            continue
        if key == position_key:
            continue
        assert torch.equal(state[key], value), key
        copied += 1
    assert copied == len(clip_state) - len(UNUSED_CLIP_KEYS) - 1

    old = clip_state[position_key].numpy().astype(np.float64)
    new = state[position_key].numpy()
    assert new.shape == (26 * 26 + 1, 768)
    np.testing.assert_array_equal(new[0], old[0])  # class position untouched
    expected = bilinear_resize_reference(old[1:].reshape(14, 14, 768), 26).reshape(26 * 26, 768)
    np.testing.assert_allclose(new[1:], expected, rtol=1e-5, atol=1e-6)

    # It runs at 416 and the position table is not re-interpolated per call (the embedding has 677 rows).
    model.eval()
    ids = torch.zeros(1, 17, dtype=torch.long)
    ids[0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad():
        out = model(torch.randn(1, 3, 416, 416), ids, (ids != 0).long())
    assert out.logits.shape == (1, 1, 208, 208)
    assert torch.isfinite(out.logits).all()


def test_from_clip_rejects_a_config_that_does_not_fit(saved_clip_vit_b16):
    with pytest.raises(ValueError, match="low_candidate_layers"):
        ASDAForReferringSegmentation.from_clip(str(saved_clip_vit_b16), low_candidate_layers=(11, 12, 13))
