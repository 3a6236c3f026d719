"""A second referring data set, written in the REFER layout: for measuring how the small model generalises.

It shares nothing with the built-in generator (`synthetic.py`) on purpose: other shapes (hexagon, pentagon,
diamond, cross, oval), other colours (orange, pink, brown, white, black), noisy gradient / stripe / blotch
backgrounds instead of grey grain, JPEG images, and other phrasings ("the leftmost ...", "... furthest to
the right", "the ... underneath the ...", "the orange one"). A run on it goes through the REFER loader
exactly as RefCOCO does:

    ROOT/refcoco/refs(unc).p  ROOT/refcoco/instances.json  ROOT/images/train2014/COCO_train2014_*.jpg

Every expression is checked to be true of its object and of no other object in the scene. Two variants:
`dev` (for tuning) and `final` (another seed and the blotch background, kept for the final check only).
"""

import json
import math
import os
import pickle
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "orange": (245, 135, 30),
    "pink": (240, 120, 200),
    "brown": (150, 90, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("hexagon", "pentagon", "diamond", "cross", "oval")
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
SPLITS = {"train": 0, "val": 1, "testA": 2, "testB": 3}
VARIANTS = {"dev": (101, ("gradient", "stripes")), "final": (202, ("blotches", "stripes"))}
MARGIN = 0.1  # position/relation gap as a share of the image side


def _pick(rng, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


@dataclass
class Shape:
    color: str
    shape: str
    size: str
    cx: float
    cy: float
    polygon: list  # [x0, y0, x1, y1, ...]


def _outline(shape, cx, cy, radius, rotation):
    if shape in ("hexagon", "pentagon"):
        n = 6 if shape == "hexagon" else 5
        angles = rotation + np.arange(n) * 2 * math.pi / n
        points = np.stack([np.cos(angles), np.sin(angles)], 1)
    elif shape == "diamond":
        points = np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], dtype=float)
    elif shape == "cross":
        a = 0.34
        points = np.array(
            [
                [-a, -1],
                [a, -1],
                [a, -a],
                [1, -a],
                [1, a],
                [a, a],
                [a, 1],
                [-a, 1],
                [-a, a],
                [-1, a],
                [-1, -a],
                [-a, -a],
            ]
        )
    else:  # oval
        angles = np.arange(24) * 2 * math.pi / 24
        points = np.stack([np.cos(angles), 0.6 * np.sin(angles)], 1)
    if shape in ("diamond", "cross", "oval"):
        turn = rotation if shape == "oval" else rotation * 0.15
        rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
        points = points @ rot.T
    points = points * radius + np.array([cx, cy])
    return [round(float(v) * 2) / 2 for v in points.reshape(-1)]


def _background(rng, kind, width, height):
    base = rng.uniform(70, 170, size=3)
    other = np.clip(base + rng.uniform(-60, 60, size=3), 40, 200)
    if kind == "gradient":
        t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, height)[:, None, None]
        image = base * (1 - t) + other * t + np.zeros((height, width, 1))
    elif kind == "stripes":
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 18)
        yy, xx = np.mgrid[0:height, 0:width]
        wave = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0)[..., None]
        image = np.where(wave, base, other * 0.5 + base * 0.5)
    else:  # blotches: low-resolution noise blown up
        small = rng.uniform(0, 1, size=(max(2, height // 24), max(2, width // 24), 1))
        blown = (
            np.asarray(
                Image.fromarray((small[..., 0] * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
                dtype=float,
            )[..., None]
            / 255
        )
        image = base * (1 - blown) + other * blown
    image = image + rng.normal(0, rng.uniform(8, 22), size=(height, width, 3))
    return np.clip(image, 0, 255)


def _scene(rng, kinds):
    width, height = int(rng.integers(120, 201)), int(rng.integers(120, 201))
    short = min(width, height)
    target = (_pick(rng, list(COLORS)), _pick(rng, SHAPES), _pick(rng, list(SIZE_WORDS)))
    specs = [target]
    for _ in range(int(rng.integers(1, 5))):
        # Distractors often share one or two attributes, so that no single word family finds the target.
        color = target[0] if rng.random() < 0.45 else _pick(rng, list(COLORS))
        shape = target[1] if rng.random() < 0.45 else _pick(rng, SHAPES)
        size = target[2] if rng.random() < 0.5 else _pick(rng, list(SIZE_WORDS))
        specs.append((color, shape, size))
    objects = []
    for color, shape, size in specs:
        side = short * (rng.uniform(0.18, 0.23) if size == "small" else rng.uniform(0.32, 0.4))
        radius = side / 2
        for _ in range(60):
            cx, cy = rng.uniform(radius + 2, width - radius - 2), rng.uniform(radius + 2, height - radius - 2)
            if all(math.hypot(cx - o[0], cy - o[1]) > radius + o[2] + 3 for o in objects):
                objects.append((cx, cy, radius, color, shape, size))
                break
    image = _background(rng, kinds[int(rng.integers(len(kinds)))], width, height)
    canvas = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    shapes = []
    for cx, cy, radius, color, shape, size in objects:
        polygon = _outline(shape, cx, cy, radius, rng.uniform(0, 2 * math.pi))
        shade = np.clip(np.array(COLORS[color]) + rng.integers(-15, 16, size=3), 0, 255)
        draw.polygon(list(zip(polygon[0::2], polygon[1::2])), fill=tuple(int(v) for v in shade))
        shapes.append(Shape(color, shape, size, cx, cy, polygon))
    return canvas, shapes


_SUBSETS = (("color",), ("shape",), ("size",), ("color", "shape"), ("size", "shape"), ("size", "color"))


def _matches(shapes, words):
    return [s for s in shapes if all(getattr(s, key) == value for key, value in words.items())]


def _noun_phrase(rng, words):
    parts = []
    if "size" in words:
        parts.append(_pick(rng, SIZE_WORDS[words["size"]]))
    if "color" in words:
        parts.append(words["color"])
    parts.append(words.get("shape") or _pick(rng, ("one", "shape", "thing")))
    return " ".join(parts)


def _expressions(rng, target, shapes, width, height):
    """(kind, text) candidates that are true of `target` only."""
    out = []
    unique = []
    for keys in _SUBSETS:
        words = {key: getattr(target, key) for key in keys}
        matches = _matches(shapes, words)
        if matches == [target]:
            unique.append(words)
            out.append(("attribute", _pick(rng, ("the ", "")) + _noun_phrase(rng, words)))
        elif len(matches) >= 2:
            others = [s for s in matches if s is not target]
            np_ = _noun_phrase(rng, words)
            if all(target.cx < s.cx - MARGIN * width for s in others):
                out.append(("position", _pick(rng, (f"the leftmost {np_}", f"{np_} on the far left"))))
            if all(target.cx > s.cx + MARGIN * width for s in others):
                out.append(("position", _pick(rng, (f"the rightmost {np_}", f"{np_} furthest to the right"))))
            if all(target.cy < s.cy - MARGIN * height for s in others):
                out.append(("position", _pick(rng, (f"the highest {np_}", f"the upper {np_}"))))
            if all(target.cy > s.cy + MARGIN * height for s in others):
                out.append(("position", _pick(rng, (f"the lowest {np_}", f"{np_} at the bottom"))))
    for anchor in shapes:
        if anchor is target:
            continue
        anchor_words = next(
            (w for w in _SUBSETS if _matches(shapes, {k: getattr(anchor, k) for k in w}) == [anchor]), None
        )
        if anchor_words is None:
            continue
        anchor_np = _noun_phrase(rng, {k: getattr(anchor, k) for k in anchor_words})
        words = {"shape": target.shape} if rng.random() < 0.6 else {"color": target.color}
        rivals = [s for s in _matches(shapes, words) if s is not target and s is not anchor]
        below = _pick(rng, ("underneath", "beneath", "under"))
        for phrase, direction in (("to the left of", "left"), ("right of", "right"), ("above", "up"), (below, "down")):
            # Rivals must clearly fail the relation (no near-ties): they may not hold it even at half the margin.
            if _holds(target, anchor, direction, MARGIN, width, height) and not any(
                _holds(s, anchor, direction, MARGIN / 2, width, height) for s in rivals
            ):
                out.append(("relation", f"the {_noun_phrase(rng, words)} {phrase} the {anchor_np}"))
    return out


def _holds(shape, anchor, direction, margin, width, height):
    """`shape` lies in `direction` of `anchor` by more than `margin` of the image side."""
    if direction in ("left", "right"):
        gap = (shape.cx - anchor.cx) / width
    else:
        gap = (shape.cy - anchor.cy) / height
    return (-gap if direction in ("left", "up") else gap) > margin


def write_refer_shapes(root, num_train_images=1000, num_eval_images=150, variant="dev", refs_per_image=2):
    """Writes the data set under `root`; returns {split: number of refs}."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    seed, kinds = VARIANTS[variant]
    image_dir = os.path.join(root, "images", "train2014")
    folder = os.path.join(root, "refcoco")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(folder, exist_ok=True)
    images, annotations, refs, counts = [], [], [], {}
    category = {shape: index + 1 for index, shape in enumerate(SHAPES)}
    for split, code in SPLITS.items():
        count = num_train_images if split == "train" else num_eval_images
        for index in range(count):
            image_id = code * 10**6 + index + 1
            rng = np.random.default_rng([seed, image_id])
            for _ in range(20):  # a scene where no target has a true, unique description is drawn again
                canvas, shapes = _scene(rng, kinds)
                described = [(s, _expressions(rng, s, shapes, *canvas.size)) for s in shapes]
                described = [(s, e) for s, e in described if e]
                if described:
                    break
            name = f"COCO_train2014_{image_id:012d}.jpg"
            canvas.save(os.path.join(image_dir, name), quality=92)
            images.append({"id": image_id, "file_name": name, "width": canvas.size[0], "height": canvas.size[1]})
            # Every object gets an annotation, referred or not (as in COCO): the random-object baseline draws from them.
            for index, shape in enumerate(shapes):
                xs, ys = shape.polygon[0::2], shape.polygon[1::2]
                bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                annotations.append(
                    {
                        "id": image_id * 10 + index,
                        "image_id": image_id,
                        "category_id": category[shape.shape],
                        "segmentation": [shape.polygon],
                        "bbox": bbox,
                        "area": float(bbox[2] * bbox[3]),
                        "iscrowd": 0,
                    }
                )
            order = rng.permutation(len(described))[:refs_per_image]
            for slot, pick in enumerate(order):
                shape, candidates = described[pick]
                ref_id = image_id * 10 + slot
                ann_id = image_id * 10 + next(index for index, other in enumerate(shapes) if other is shape)
                picked = rng.permutation(len(candidates))[: int(rng.integers(1, 3))]
                sentences = [
                    {"tokens": candidates[i][1].split(), "raw": candidates[i][1], "sent": candidates[i][1]}
                    for i in picked
                ]
                for k, sentence in enumerate(sentences):
                    sentence["sent_id"] = ref_id * 10 + k
                refs.append(
                    {
                        "ref_id": ref_id,
                        "ann_id": ann_id,
                        "image_id": image_id,
                        "category_id": category[shape.shape],
                        "split": split,
                        "sent_ids": [s["sent_id"] for s in sentences],
                        "sentences": sentences,
                        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                    }
                )
                counts[split] = counts.get(split, 0) + 1
    with open(os.path.join(folder, "refs(unc).p"), "wb") as handle:
        pickle.dump(refs, handle, protocol=2)
    categories = [{"id": index, "name": shape} for shape, index in category.items()]
    with open(os.path.join(folder, "instances.json"), "w", encoding="utf-8") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    return counts
