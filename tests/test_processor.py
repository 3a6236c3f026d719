"""ASDAImageProcessor and ASDAProcessor: letterbox numbers against hand computations, every input kind,
bad inputs, the mask round trip, and the offline Hub round trip in a fresh process."""

import json
import logging
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_asda.image_processing_asda import ASDAImageProcessor
from modeling_asda.processing_asda import ASDAProcessor

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float64)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float64)
PAD = np.array([123.7, 116.3, 103.5]) / 255.0


# ------------------------------------------------------------------ independent helpers (numpy) --


def area_resize_by_supersampling(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Exact area resampling of (H, W, C): replicate pixels to a common grid, then average blocks."""
    h, w = image.shape[:2]
    lh, lw = math.lcm(h, out_h), math.lcm(w, out_w)
    fine = np.repeat(np.repeat(image, lh // h, axis=0), lw // w, axis=1)
    return fine.reshape(out_h, lh // out_h, out_w, lw // out_w, -1).mean(axis=(1, 3))


def expected_pixels(rgb01: np.ndarray, size: int, resized_hw, top_left) -> np.ndarray:
    """Letterbox by hand: resize, paste on the published pad colour, CLIP-normalise. Returns (3, S, S)."""
    (rh, rw), (top, left) = resized_hw, top_left
    canvas = np.broadcast_to(PAD, (size, size, 3)).copy()
    canvas[top : top + rh, left : left + rw] = area_resize_by_supersampling(rgb01, rh, rw)
    return ((canvas - MEAN) / STD).transpose(2, 0, 1)


def unnormalise(pixel_values: torch.Tensor) -> np.ndarray:
    """(3, S, S) normalised -> (S, S, 3) in [0, 1]."""
    return pixel_values.numpy().transpose(1, 2, 0) * STD + MEAN


def bilinear_half_pixel(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of (H, W) with half-pixel centres and edge clamping (cv2.INTER_LINEAR's convention)."""

    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = axis(image.shape[0], out_h)
    c0, c1, fc = axis(image.shape[1], out_w)
    rows = image[r0] * (1 - fr[:, None]) + image[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc[None]) + rows[:, c1] * fc[None]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


@pytest.fixture(scope="module")
def processor():
    return ASDAProcessor()


# ------------------------------------------------------------------------------- pixel values --


@pytest.mark.parametrize(
    "hw, size, resized_hw, top_left",
    [
        ((3, 5), 4, (2, 4), (1, 0)),  # landscape, non-integer downscale (1.5 and 1.25)
        ((5, 3), 4, (4, 2), (0, 1)),  # portrait
        ((2, 3), 8, (5, 8), (1, 0)),  # non-integer upscale (8/3), odd padding goes to the bottom
        ((6, 6), 3, (3, 3), (0, 0)),  # square, integer factor
        ((1, 1), 5, (5, 5), (0, 0)),  # one pixel fills the square
    ],
)
def test_pixel_values_equal_hand_computation(hw, size, resized_hw, top_left):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = ASDAImageProcessor(image_size=size)(Image.fromarray(image))
    expected = expected_pixels(image / 255.0, size, resized_hw, top_left)
    assert out["pixel_values"].shape == (1, 3, size, size) and out["pixel_values"].dtype == torch.float32
    np.testing.assert_allclose(out["pixel_values"][0].numpy(), expected, atol=1e-5)
    assert out["original_sizes"].tolist() == [list(hw)]


def test_padding_is_the_published_colour_and_sizes_are_height_width():
    out = ASDAImageProcessor(image_size=32)(np.full((8, 32, 3), 255, np.uint8))  # 8 high, 32 wide
    pixels = unnormalise(out["pixel_values"][0])
    np.testing.assert_allclose(pixels[:12], np.broadcast_to(PAD, (12, 32, 3)), atol=1e-6)  # top band
    np.testing.assert_allclose(pixels[12:20], 1.0, atol=1e-6)
    np.testing.assert_allclose(pixels[20:], np.broadcast_to(PAD, (12, 32, 3)), atol=1e-6)
    assert out["original_sizes"].tolist() == [[8, 32]]


# ------------------------------------------------------------------------------- input kinds --

GREY = np.array([[0, 64], [128, 255]], dtype=np.uint8)
RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
ALPHA = np.array([[255, 0], [128, 255]], dtype=np.uint8)


def grey(values) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=np.float64)[..., None], 3, axis=-1)


def composite(rgb01, alpha01):
    return rgb01 * alpha01[..., None] + PAD * (1 - alpha01[..., None])


def pil_mode_cases():
    grey01 = np.repeat((GREY / 255.0)[..., None], 3, axis=-1)
    rgb01 = RGB / 255.0
    alpha01 = ALPHA / 255.0
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30] + [0] * 756)
    transparent = palette.copy()
    transparent.info["transparency"] = 1  # palette index 1 is see-through
    cmyk = np.array([[[100, 0, 0, 50], [0, 255, 0, 0]], [[0, 0, 0, 255], [30, 60, 90, 20]]], dtype=np.uint8)
    inks = cmyk.astype(np.int64)
    cmyk_rgb = np.stack([(255 - inks[..., c]) * (255 - inks[..., 3]) / 255 for c in range(3)], -1) / 255.0
    sixteen = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    sixteen01 = np.repeat((sixteen / 65535.0)[..., None], 3, axis=-1)
    floats = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    return {
        "1": (Image.fromarray(np.array([[0, 1], [1, 0]], dtype=bool)), grey([[0.0, 1], [1, 0]]), 0),
        "L": (Image.fromarray(GREY, mode="L"), grey01, 0),
        "LA": (Image.fromarray(np.stack([GREY, ALPHA], -1), mode="LA"), composite(grey01, alpha01), 0),
        "P": (palette, rgb01, 0),
        "P+transparency": (transparent, composite(rgb01, np.array([[1.0, 0], [1, 1]])), 0),
        "RGB": (Image.fromarray(RGB, mode="RGB"), rgb01, 0),
        "RGBA": (Image.fromarray(np.dstack([RGB, ALPHA]), mode="RGBA"), composite(rgb01, alpha01), 0),
        "CMYK": (Image.fromarray(cmyk, mode="CMYK"), cmyk_rgb, 1 / 255),
        "I;16": (Image.fromarray(sixteen), sixteen01, 0),  # 1000 stays 1000/65535, not clipped to white
        "I": (Image.fromarray(sixteen.astype(np.int32)), sixteen01, 0),
        "F": (Image.fromarray(floats), np.repeat(floats[..., None], 3, -1), 0),
    }


@pytest.mark.parametrize("mode", list(pil_mode_cases()))
def test_every_pil_mode_is_converted(mode):
    image, expected, tolerance = pil_mode_cases()[mode]
    assert image.mode == mode.split("+")[0]
    out = ASDAImageProcessor(image_size=2)(image)  # 2x2 into 2x2: no resampling, only conversion
    np.testing.assert_allclose(unnormalise(out["pixel_values"][0]), expected, atol=tolerance + 1e-5)


def array_cases():
    grey01 = np.repeat((GREY / 255.0)[..., None], 3, axis=-1)
    rgb01 = RGB / 255.0
    return {
        "numpy HW uint8": (GREY, grey01),
        "numpy HW1": (GREY[..., None], grey01),
        "numpy HWC uint8": (RGB, rgb01),
        "numpy HWC4 uint8": (np.dstack([RGB, ALPHA]), composite(rgb01, ALPHA / 255.0)),
        "numpy HWC uint16": (RGB.astype(np.uint16) * 257, rgb01),
        "numpy HWC float64": (rgb01, rgb01),
        "numpy HWC int64 0..255": (RGB.astype(np.int64), rgb01),
        "numpy HW bool": (GREY > 100, np.repeat((GREY > 100)[..., None], 3, -1).astype(float)),
        "torch CHW uint8": (torch.from_numpy(RGB).permute(2, 0, 1), rgb01),
        "torch CHW float": (torch.from_numpy(rgb01).permute(2, 0, 1).float(), rgb01),
        "torch CHW bfloat16": (torch.tensor([[[0.5, 0.25], [1, 0]]] * 3).bfloat16(), grey([[0.5, 0.25], [1, 0]])),
    }


@pytest.mark.parametrize("name", list(array_cases()))
def test_arrays_and_tensors_are_converted(name):
    image, expected = array_cases()[name]
    out = ASDAImageProcessor(image_size=2)(image)
    np.testing.assert_allclose(unnormalise(out["pixel_values"][0]), expected, atol=1e-5)
    assert out["original_sizes"].tolist() == [[2, 2]]


def test_channel_axis_conventions():
    # Unambiguous shapes are read either way; when both ends could be channels, numpy means HWC and torch CHW.
    rgb = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    ip = ASDAImageProcessor(image_size=6)
    expected = unnormalise(ip(rgb)["pixel_values"][0])
    np.testing.assert_allclose(expected, rgb / 255.0, atol=1e-6)
    for variant in (torch.from_numpy(rgb), torch.from_numpy(rgb).permute(2, 0, 1), rgb.transpose(2, 0, 1)):
        np.testing.assert_allclose(unnormalise(ip(variant)["pixel_values"][0]), expected, atol=1e-6)
    ambiguous = np.zeros((3, 6, 4), np.uint8)  # numpy: 3x6 RGBA; torch: 3 channels of 6x4
    assert ip(ambiguous)["original_sizes"].tolist() == [[3, 6]]
    assert ip(torch.from_numpy(ambiguous))["original_sizes"].tolist() == [[6, 4]]


def test_batches_lists_and_4d_arrays():
    ip = ASDAImageProcessor(image_size=8)
    images = [np.zeros((3, 5, 3), np.uint8), Image.new("L", (7, 2)), torch.ones(3, 4, 4)]
    out = ip(images)
    assert out["pixel_values"].shape == (3, 3, 8, 8)
    assert out["original_sizes"].tolist() == [[3, 5], [2, 7], [4, 4]]
    batch = ip(torch.rand(2, 3, 6, 4))  # 4-D tensor = batch of CHW
    assert batch["original_sizes"].tolist() == [[6, 4], [6, 4]]
    assert ip(np.zeros((2, 6, 4, 3), np.uint8))["original_sizes"].tolist() == [[6, 4], [6, 4]]
    assert ip(images[:1], return_tensors="np")["pixel_values"].shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([np.zeros((4, 4), np.uint8), np.zeros((0, 5), np.uint8)], r"image 1 has zero size"),
        ([Image.new("RGB", (0, 3))], r"image 0 has zero size"),
        (np.zeros((1, 2, 3, 4, 5)), r"image 0: expected a 2-D \(H, W\) or 3-D image, got shape \(1, 2, 3, 4, 5\)"),
        ([np.zeros(7)], r"image 0: expected a 2-D"),
        (["picture.png"], r"image 0 is a str; expected a PIL"),
        ([np.zeros((2, 2)), {"pixels": 1}], r"image 1 is a dict"),
        ([np.zeros((2, 2)), np.zeros((2, 2)), np.array([[0.5, np.nan]])], r"image 2: float array contains NaN"),
        ([np.array([[0.0, 200.0]])], r"image 0: float values span \[0, 200\], expected \[0, 1\] \(it looks like 0"),
        ([np.array([[0, 300]])], r"image 0: integer array of dtype int64 has values in \[0, 300\]"),
        ([np.zeros((5, 6, 7))], r"image 0: shape \(5, 6, 7\) has no channel axis"),
        ([Image.fromarray(np.array([[-1, 5]], dtype=np.int32))], r"image 0: PIL mode 'I' is read as 16-bit"),
        ([np.array([["a", "b"]])], r"image 0: unsupported array dtype"),
        ([], r"no images were given"),
    ],
)
def test_bad_images_give_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        ASDAImageProcessor(image_size=8)(bad)


def test_corrupt_file_is_reported_with_its_index(tmp_path):
    path = tmp_path / "broken.png"
    Image.new("RGB", (64, 64), "red").save(path)
    path.write_bytes(path.read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match="image 1: could not decode"):
        ASDAImageProcessor(image_size=8)([np.zeros((2, 2)), Image.open(path)])


# ------------------------------------------------------------------------ masks: round trips --


def ellipse_mask(h, w, cy, cx, ry, rx):
    y, x = np.mgrid[:h, :w]
    return ((y + 0.5 - cy * h) / (ry * h)) ** 2 + ((x + 0.5 - cx * w) / (rx * w)) ** 2 <= 1


def half_resolution_logits(letterboxed: torch.Tensor) -> torch.Tensor:
    """What an ideal model emits at S/2: each output pixel covers 2x2 input pixels, foreground if >= half."""
    pooled = letterboxed[:, None].reshape(letterboxed.shape[0], 1, letterboxed.shape[-1] // 2, 2, -1, 2).mean((3, 5))
    return torch.where(pooled >= 0.5, 20.0, -20.0)


# Sizes chosen so the letterbox padding is odd (426 -> 277 of 416, 374 -> 311): an off-by-one in where
# the padding goes shows up as a shift. At the half resolution one cell is ~3 pixels of a 640-pixel image
# and the published 0.35 threshold dilates by ~0.15 cell, so IoU >= 0.99 needs objects of about half the
# frame; the centroid check below is the sharper test of the geometry.
ROUND_TRIP_CASES = {
    "portrait 640x426": ellipse_mask(640, 426, 0.45, 0.5, 0.45, 0.45),
    "landscape 374x500": ellipse_mask(374, 500, 0.55, 0.45, 0.45, 0.45),
    "square 416": ellipse_mask(416, 416, 0.5, 0.5, 0.42, 0.35),
    "small upscaled 40x71": ellipse_mask(40, 71, 0.5, 0.5, 0.3, 0.2),
    "10000x50": np.broadcast_to((np.arange(10000) >= 2500) & (np.arange(10000) < 8000), (50, 10000)).T.copy(),
    "50x10000": np.broadcast_to((np.arange(10000) >= 1000) & (np.arange(10000) < 6000), (50, 10000)).copy(),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP_CASES))
@pytest.mark.parametrize("resolution", ["full", "half"])
def test_mask_letterbox_round_trip(name, resolution):
    ip = ASDAImageProcessor()  # 416, the model's mask is 208
    mask = ROUND_TRIP_CASES[name]
    boxed = ip.letterbox_masks(mask)
    assert boxed.shape == (1, 416, 416) and set(boxed.unique().tolist()) == {0.0, 1.0}
    logits = (boxed[:, None] * 40 - 20) if resolution == "full" else half_resolution_logits(boxed)
    (restored,) = ip.post_process_masks(logits, [mask.shape], threshold=0.35)
    assert restored.dtype == torch.bool and restored.shape == mask.shape
    restored = restored.numpy()
    assert iou(restored, mask) >= 0.99
    cell = max(mask.shape) / 416  # original pixels per letterboxed pixel
    shift = np.array(np.nonzero(restored)).mean(1) - np.array(np.nonzero(mask)).mean(1)
    assert np.abs(shift).max() <= 0.5 * cell, shift


@pytest.mark.parametrize("value", [0, 1])
def test_one_pixel_mask_round_trip(value):
    ip = ASDAImageProcessor()
    mask = np.array([[value]], dtype=np.uint8)
    boxed = ip.letterbox_masks(mask)
    assert boxed.eq(value).all()  # one pixel fills the whole square
    for logits in (boxed[:, None] * 40 - 20, half_resolution_logits(boxed)):
        assert ip.post_process_masks(logits, torch.tensor([[1, 1]]), threshold=0.35)[0].tolist() == [[bool(value)]]


def test_letterbox_masks_matches_image_geometry_and_accepts_kinds():
    ip = ASDAImageProcessor(image_size=8)
    mask = np.zeros((2, 4), np.uint8)
    mask[:, 2:] = 255  # right half of a 2x4 mask
    as_pil, as_tensor = Image.fromarray(mask), torch.from_numpy(mask > 0)
    out = ip.letterbox_masks([mask, as_pil, as_tensor, mask[None]])
    expected = np.zeros((8, 8))
    expected[2:6, 4:] = 1  # resized 4x8 at top 2
    for m in out:
        np.testing.assert_array_equal(m.numpy(), expected)
    assert ip.letterbox_masks(np.stack([mask, mask])).shape == (2, 8, 8)  # 3-D = batch
    assert ip.letterbox_masks(mask, size=4).shape == (1, 4, 4)


def test_labels_come_with_images_and_must_match_them():
    ip = ASDAImageProcessor(image_size=8)
    out = ip([np.zeros((2, 4, 3), np.uint8)], masks=[np.ones((2, 4), np.uint8)])
    assert out["labels"].shape == (1, 8, 8) and out["labels"].sum() == 32
    with pytest.raises(ValueError, match=r"mask 0 is 4x2 but image 0 is 2x4"):
        ip([np.zeros((2, 4, 3), np.uint8)], masks=[np.ones((4, 2))])
    with pytest.raises(ValueError, match=r"got 1 images but 2 masks"):
        ip([np.zeros((2, 4, 3), np.uint8)], masks=[np.ones((2, 4))] * 2)
    with pytest.raises(ValueError, match=r"mask 0 contains NaN"):
        ip.letterbox_masks(np.array([[np.nan, 1.0]]))


# -------------------------------------------------------------------------- post-processing --


def test_post_process_follows_the_published_order():
    """sigmoid -> bilinear to S -> crop padding -> bilinear to the original size, computed here in numpy."""
    size, original = 16, (5, 11)
    ip = ASDAImageProcessor(image_size=size)
    logits = torch.from_numpy(np.random.default_rng(1).normal(0, 3, (1, 1, 8, 8))).float()
    (probabilities,) = ip.post_process_masks(logits, [original], threshold=None)
    square = bilinear_half_pixel(1 / (1 + np.exp(-logits[0, 0].double().numpy())), size, size)
    rh, rw = round(5 * 16 / 11), 16  # 7 x 16, top (16 - 7) // 2 = 4
    expected = bilinear_half_pixel(square[4 : 4 + rh, 0:rw], *original)
    np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)
    (masks,) = ip.post_process_masks(logits, [original], threshold=0.35)
    np.testing.assert_array_equal(masks.numpy(), expected > 0.35)


def test_threshold_is_strict_and_at_0_35():
    ip = ASDAImageProcessor(image_size=8)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    low, high = torch.full((2, 1, 4, 4), logit(0.349)), torch.full((2, 1, 4, 4), logit(0.351))
    assert not any(m.any() for m in ip.post_process_masks(low, [(3, 9), (9, 3)], threshold=0.35))
    results = ip.post_process_masks(high, [(3, 9), (9, 3)], threshold=0.35)
    assert [tuple(m.shape) for m in results] == [(3, 9), (9, 3)] and all(m.all() for m in results)


@pytest.mark.parametrize(
    "logits, sizes, message",
    [
        (torch.zeros(2, 1, 4, 4), [(3, 3)], r"got 2 logit maps but 1 original sizes"),
        (torch.zeros(1, 2, 4, 4), [(3, 3)], r"logits must have shape \(B, 1, h, w\)"),
        (torch.zeros(4, 4), [(3, 3)], r"logits must have shape"),
        (np.zeros((1, 1, 4, 4)), [(3, 3)], r"logits must be a torch.Tensor"),
        (torch.zeros(1, 1, 4, 4), [(0, 3)], r"original_sizes\[0\] must be \(height, width\) positive integers"),
        (torch.zeros(1, 1, 4, 4), [(3, 3, 3)], r"original_sizes must have shape \(B, 2\)"),
    ],
)
def test_post_process_bad_inputs(logits, sizes, message):
    with pytest.raises(ValueError, match=message):
        ASDAImageProcessor(image_size=8).post_process_masks(logits, sizes, threshold=0.35)


# ---------------------------------------------------------------------------------- processor --


def test_default_processor_is_offline_416_and_17(processor, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = ASDAProcessor()
    assert fresh.image_processor.image_size == 416 and fresh.max_length == 17 and len(fresh.tokenizer) == 49408
    out = processor(images=Image.new("RGB", (64, 48)), text="the cat", return_tensors="pt")
    assert set(out) == {"pixel_values", "original_sizes", "input_ids", "attention_mask"}
    assert out["pixel_values"].shape == (1, 3, 416, 416) and out["input_ids"].shape == (1, 17)
    assert out["original_sizes"].tolist() == [[48, 64]]


def test_processor_matching_a_config():
    custom = ASDAProcessor(image_size=224, max_length=20)
    out = custom(images=[np.zeros((10, 20, 3), np.uint8)] * 2, text=["a", "b"])
    assert out["pixel_values"].shape == (2, 3, 224, 224) and out["input_ids"].shape == (2, 20)

    class Config:
        image_size, max_text_length = 128, 9

    assert ASDAProcessor.from_model_config(Config())(text="x")["input_ids"].shape == (1, 9)
    with pytest.raises(ValueError, match="disagrees"):
        ASDAProcessor(image_processor=ASDAImageProcessor(image_size=224), image_size=416)


def test_images_alone_text_alone_and_extreme_sizes(processor):
    only_images = processor(images=[np.zeros((1, 1, 3), np.uint8), np.zeros((10000, 50), np.uint8)])
    assert set(only_images) == {"pixel_values", "original_sizes"}
    assert only_images["original_sizes"].tolist() == [[1, 1], [10000, 50]]
    assert torch.isfinite(only_images["pixel_values"]).all()
    only_text = processor(text="a man on the left")
    assert set(only_text) == {"input_ids", "attention_mask"}


def test_processor_bad_inputs(processor, caplog):
    two_images = [np.zeros((4, 4), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"got 2 images and 3 texts; .*repeat an image"):
        processor(images=two_images, text=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"text 1 is empty"):
        processor(images=two_images, text=["a", "  "])
    with pytest.raises(ValueError, match=r"pass images=..., text=... or both"):
        processor()
    with caplog.at_level(logging.WARNING):
        out = processor(images=two_images[:1], text=" ".join(["word"] * 200))
    assert out["input_ids"].shape == (1, 17) and "lost 185 of 200 tokens" in caplog.text
    out = processor(images=two_images[:1], text="🐕‍🦺 über 北京 ✨")  # any unicode tokenizes
    assert out["attention_mask"].sum() > 2


def test_processor_post_process_delegates(processor):
    logits = torch.randn(2, 1, 208, 208)
    sizes = torch.tensor([[300, 200], [50, 600]])
    ours = processor.post_process_masks(logits, sizes, threshold=0.35)
    theirs = processor.image_processor.post_process_masks(logits, sizes, threshold=0.35)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


# ------------------------------------------------------------------------- Hub round trip --

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoProcessor

    folder = sys.argv[1]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = json.load(open(folder + "/inputs.json"))
    images = [np.load(folder + "/image0.npy"), Image.open(folder + "/image1.png")]
    out = dict(processor(images=images, text=inputs["text"], return_tensors="pt"))
    out["masks"] = processor.post_process_masks(torch.load(folder + "/logits.pt", weights_only=True), out["original_sizes"], threshold=0.35)
    out["modules"] = [type(processor).__module__, type(processor.image_processor).__module__]
    out["imported_package"] = "modeling_asda" in sys.modules
    torch.save(out, folder + "/outputs.pt")
    """
)


def test_saved_processor_loads_offline_in_a_fresh_process(tmp_path):
    processor = ASDAProcessor(image_size=96, max_length=12)
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_asda.ASDAProcessor"
    assert {"processing_asda.py", "image_processing_asda.py"} <= set(os.listdir(tmp_path))

    rng = np.random.default_rng(0)
    np.save(tmp_path / "image0.npy", rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (70, 20, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "image1.png")
    texts = ["The man's hat &amp; coat 👒", "a " * 40]
    (tmp_path / "inputs.json").write_text(json.dumps({"text": texts}))
    logits = torch.randn(2, 1, 48, 48)
    torch.save(logits, tmp_path / "logits.pt")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    # cwd = the saved folder, so nothing of the checkout is importable by path.
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert theirs["imported_package"] is False
    assert all(m.startswith("transformers_modules.") for m in theirs["modules"])

    images = [np.load(tmp_path / "image0.npy"), Image.open(tmp_path / "image1.png")]
    ours = processor(images=images, text=texts, return_tensors="pt")
    for key in ("pixel_values", "original_sizes", "input_ids", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), key
    masks = processor.post_process_masks(logits, ours["original_sizes"], threshold=0.35)
    assert all(torch.equal(a, b) for a, b in zip(masks, theirs["masks"]))


def test_image_settings_given_per_call_equal_a_processor_built_with_them():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (37, 61, 4), dtype=np.uint8), rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)]
    masks = [rng.random((37, 61)) > 0.5, rng.random((50, 20)) > 0.5]
    settings = dict(
        image_size=24, pad_value=(10.0, 200.0, 30.0), image_mean=(0.5, 0.4, 0.3), image_std=(0.2, 0.3, 0.4)
    )
    default = ASDAImageProcessor(image_size=32)
    built = ASDAImageProcessor(**settings)
    per_call = default(images, masks=masks, **settings)
    expected = built(images, masks=masks)
    for key in ("pixel_values", "original_sizes", "labels"):
        torch.testing.assert_close(per_call[key], expected[key], rtol=0, atol=0)
    assert per_call["pixel_values"].shape == (2, 3, 24, 24)
    # The call did not change the processor: the next call uses its own settings again.
    assert default.image_size == 32 and default(images)["pixel_values"].shape == (2, 3, 32, 32)
    # One setting alone; None means "the processor's".
    only_pad = default(images, pad_value=settings["pad_value"], image_size=None)["pixel_values"]
    torch.testing.assert_close(
        only_pad, ASDAImageProcessor(image_size=32, pad_value=settings["pad_value"])(images)["pixel_values"]
    )
    # Through the processor as well.
    processor = ASDAProcessor(image_size=32)
    through = processor(images=images, text=["a", "b"], masks=masks, **settings)
    torch.testing.assert_close(through["labels"], expected["labels"], rtol=0, atol=0)


def test_per_call_settings_are_checked():
    processor = ASDAImageProcessor(image_size=16)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"unexpected arguments: \['do_resize'\].*image_size"):
        processor(image, do_resize=True)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        processor(image, image_size=0)
    with pytest.raises(ValueError, match="pad_value needs 3 values"):
        processor(image, pad_value=(1.0, 2.0))
    with pytest.raises(TypeError, match="ASDAProcessor got unexpected arguments"):
        ASDAProcessor(image_size=16)(images=image, text="a", do_resize=True)
