"""Turning canonical rows into model batches: augmentation, letterboxing, tokenisation, collation.

Used with `datasets.Dataset.set_transform`, so images are decoded lazily in the DataLoader workers.
Augmentation is seeded per (seed, epoch, sample id), not by a global RNG: a resumed or multi-worker
run sees exactly the same augmented samples as an uninterrupted single-worker run.
"""

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_LEFT_RIGHT = re.compile(r"\b(left|right)", re.IGNORECASE)


def swap_left_right(sentence: str) -> str:
    """'the man on the left' -> 'the man on the right' (also leftmost/rightmost), keeping capitalisation."""

    def swap(match):
        word = match.group(1)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(swap, sentence)


@dataclass
class AugmentationConfig:
    """Training augmentation of the published code, each off by default (the paper does not mention any)."""

    hflip_prob: float = 0.0  # horizontal flip; swaps left/right in the expression
    color_jitter: float = 0.0  # max relative change of brightness, contrast and saturation
    affine: bool = False  # ±5° rotation, ±10% translation, 0.9-1.1 scale

    @property
    def enabled(self) -> bool:
        return self.hflip_prob > 0 or self.color_jitter > 0 or self.affine


def _sample_rng(seed: int, epoch: int, sample_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{seed}:{epoch}:{sample_id}".encode()))


def _to_float_image(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def _to_bool_mask(mask: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(mask) > 0)


def augment(image, mask, sentence, config: AugmentationConfig, rng: np.random.Generator, fill):
    """image (3, H, W) float in [0, 1], mask (H, W) bool -> augmented copies (same size) and sentence."""
    if config.hflip_prob > 0 and rng.random() < config.hflip_prob:
        image, mask, sentence = image.flip(-1), mask.flip(-1), swap_left_right(sentence)
    if config.color_jitter > 0:
        strength = config.color_jitter
        brightness, contrast, saturation = (1 + rng.uniform(-strength, strength) for _ in range(3))
        image = image * brightness
        grey = image.mean(dim=0, keepdim=True)
        image = (image - grey.mean()) * contrast + grey.mean()
        grey = image.mean(dim=0, keepdim=True)
        image = ((image - grey) * saturation + grey).clamp(0, 1)
    if config.affine:
        angle = math.radians(rng.uniform(-5, 5))
        scale = rng.uniform(0.9, 1.1)
        shift_x, shift_y = rng.uniform(-0.1, 0.1, size=2) * 2  # normalised coordinates span 2
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, shift_x], [sin, cos, shift_y]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, (1, 1, *image.shape[-2:]), align_corners=False)
        fill = torch.tensor(fill, dtype=torch.float32)[:, None, None]
        # Sample (image - fill) with zero padding so uncovered pixels take the padding colour.
        image = F.grid_sample((image - fill)[None], grid, mode="bilinear", align_corners=False)[0] + fill
        mask = F.grid_sample(mask[None, None].float(), grid, mode="nearest", align_corners=False)[0, 0] > 0.5
    return image, mask, sentence


class RISTransform:
    """Batched `set_transform` function: canonical rows -> model inputs.

    Train mode returns pixel_values, input_ids, attention_mask, labels (letterboxed masks) and target_labels
    (1 when the expression names an object, 0 for a no-target row). Eval mode
    also returns `gt_masks` (the original-resolution masks, for evaluation at the original size),
    `original_sizes` and `row_index` (when the data set has that column) so distributed evaluation can
    prove it counted every sample once.
    """

    def __init__(self, processor, train: bool, augmentation: AugmentationConfig | None = None, seed: int = 0):
        self.processor = processor
        self.train = train
        self.augmentation = augmentation or AugmentationConfig()
        self.seed = seed
        self.epoch = 0  # advanced by a Trainer callback; read by DataLoader workers when they start

    def __call__(self, batch: dict) -> dict:
        images = [_to_float_image(image) for image in batch["image"]]
        masks = [_to_bool_mask(mask) for mask in batch["mask"]]
        sentences = list(batch["sentence"])
        if self.train and self.augmentation.enabled:
            fill = [v / 255.0 for v in self.processor.image_processor.pad_value]
            for i, sample_id in enumerate(batch["sample_id"]):
                rng = _sample_rng(self.seed, self.epoch, sample_id)
                images[i], masks[i], sentences[i] = augment(
                    images[i], masks[i], sentences[i], self.augmentation, rng, fill
                )
        vision = self.processor.image_processor(images, masks=masks, return_tensors="pt")
        text = self.processor(text=sentences, return_tensors="pt")
        out = {
            "pixel_values": list(vision["pixel_values"]),
            "input_ids": list(text["input_ids"]),
            "attention_mask": list(text["attention_mask"]),
            "labels": list(vision["labels"]),
        }
        if "no_target" in batch:  # 1 = the expression names something (trains the no-target head, if any)
            out["target_labels"] = [torch.tensor(0.0 if flag else 1.0) for flag in batch["no_target"]]
        if not self.train:
            out["gt_masks"] = masks
            out["original_sizes"] = list(vision["original_sizes"])
            if "row_index" in batch:
                out["row_index"] = [torch.tensor(i) for i in batch["row_index"]]
        return out


def collate_ris(features: list[dict]) -> dict:
    """Stack fixed-size tensors; keep original-resolution masks (sizes differ) as a list."""
    batch = {}
    for key in features[0]:
        values = [feature[key] for feature in features]
        batch[key] = values if key == "gt_masks" else torch.stack(values)
    return batch
