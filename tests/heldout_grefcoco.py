"""A held-out data set in the gRefCOCO layout, unlike the built-in synthetic one in every visible way.

Other shapes (hexagon, diamond, pentagon, cross, oval), other colours (orange, pink, brown, white, black,
lime), striped or checkered pastel backgrounds, other size words (large / little) and other phrasings
("the hexagon that is orange", "every pink item", "the leftmost diamond"). About a third of the refs name
nothing or several objects. Written as ROOT/grefcoco/grefs(unc).json + instances.json (polygons) and
ROOT/images/train2014/COCO_train2014_*.jpg, so it goes through the same loader as real gRefCOCO.

It exists to check generalisation end to end and is never used for tuning:

    python tests/heldout_grefcoco.py /tmp/gref-heldout --train_refs 2400
    python scripts/run_ris.py --dataset_name /tmp/gref-heldout --dataset_config grefcoco --split_by unc \\
        --config_preset tiny --num_train_epochs 6
"""

import argparse
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "orange": (240, 140, 20),
    "pink": (240, 110, 185),
    "brown": (125, 75, 35),
    "white": (245, 245, 240),
    "black": (25, 25, 30),
    "lime": (160, 230, 40),
}
SHAPES = ("hexagon", "diamond", "pentagon", "cross", "oval")
PLURAL = {"hexagon": "hexagons", "diamond": "diamonds", "pentagon": "pentagons", "cross": "crosses", "oval": "ovals"}
SIZE_WORDS = {"big": "large", "small": "little"}
SPLITS = {"train": None, "val": None, "testA": None, "testB": None}


def _polygon(shape, cx, cy, r, rotation):
    if shape == "hexagon":
        angles = rotation + np.arange(6) * np.pi / 3
        radii = [r] * 6
    elif shape == "pentagon":
        angles = rotation + np.arange(5) * 2 * np.pi / 5
        radii = [r] * 5
    elif shape == "diamond":
        angles = np.arange(4) * np.pi / 2
        radii = [r, 0.65 * r, r, 0.65 * r]
    elif shape == "oval":
        angles = np.arange(24) * 2 * np.pi / 24
        return [(cx + r * math.cos(a), cy + 0.6 * r * math.sin(a)) for a in angles]
    else:  # cross: a plus sign, arm half-width 0.3 r
        w = 0.3 * r
        pts = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
        return [(cx + x, cy + y) for x, y in pts]
    return [(cx + rr * math.sin(a), cy - rr * math.cos(a)) for rr, a in zip(radii, angles)]


def _background(rng, width, height):
    base = rng.uniform(150, 225, size=3)
    other = np.clip(base + rng.uniform(-40, 40, size=3), 0, 255)
    yy, xx = np.mgrid[0:height, 0:width]
    if rng.random() < 0.5:
        period = rng.integers(8, 20)
        pattern = ((xx + yy * rng.choice([0, 1])) // period) % 2
    else:
        period = rng.integers(10, 24)
        pattern = ((xx // period) + (yy // period)) % 2
    image = np.where(pattern[..., None] == 1, other, base)
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _scene(rng, image_id):
    width, height = int(rng.integers(160, 241)), int(rng.integers(140, 221))
    objects = []
    for _ in range(int(rng.integers(2, 6))):
        for _attempt in range(30):
            size = "big" if rng.random() < 0.5 else "small"
            r = min(width, height) * (rng.uniform(0.17, 0.22) if size == "big" else rng.uniform(0.09, 0.12))
            cx, cy = rng.uniform(r + 2, width - r - 2), rng.uniform(r + 2, height - r - 2)
            if all(math.hypot(cx - o["cx"], cy - o["cy"]) > r + o["r"] + 4 for o in objects):
                color = list(COLORS)[int(rng.integers(len(COLORS)))]
                # Repeat an earlier colour or shape often, so single words rarely suffice.
                if objects and rng.random() < 0.4:
                    color = objects[int(rng.integers(len(objects)))]["color"]
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                if objects and rng.random() < 0.4:
                    shape = objects[int(rng.integers(len(objects)))]["shape"]
                polygon = _polygon(shape, cx, cy, r, rng.uniform(-0.3, 0.3))
                objects.append(
                    {"color": color, "shape": shape, "size": size, "cx": cx, "cy": cy, "r": r, "poly": polygon}
                )
                break
    image = _background(rng, width, height)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        jitter = rng.integers(-10, 11, size=3)
        draw.polygon(
            obj["poly"], fill=tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[obj["color"]], jitter))
        )
    return canvas, objects


def _matches(objects, **attrs):
    return [i for i, o in enumerate(objects) if all(o[k] == v for k, v in attrs.items())]


def _single_sentences(rng, objects, index):
    """Phrasings that single out objects[index] (unique by attributes, or by an extreme position)."""
    o = objects[index]
    out = []
    if len(_matches(objects, color=o["color"], shape=o["shape"])) == 1:
        out += [
            f"the {o['color']} {o['shape']}",
            f"the {o['shape']} that is {o['color']}",
            f"{o['color']} {o['shape']}",
        ]
    if len(_matches(objects, shape=o["shape"])) == 1:
        out += [f"the {o['shape']}", f"the only {o['shape']}"]
    if len(_matches(objects, color=o["color"])) == 1:
        out += [f"the {o['color']} one", f"the {o['color']} item"]
    same = _matches(objects, shape=o["shape"])
    if len(same) >= 2:
        xs = sorted(objects[i]["cx"] for i in same)
        if o["cx"] == xs[0] and xs[1] - xs[0] > 20:
            out += [f"the leftmost {o['shape']}", f"the {o['shape']} furthest to the left"]
        if o["cx"] == xs[-1] and xs[-1] - xs[-2] > 20:
            out += [f"the rightmost {o['shape']}", f"the {o['shape']} on the far right"]
        sizes = {objects[i]["size"] for i in same}
        if len(sizes) == 2 and len(_matches(objects, shape=o["shape"], size=o["size"])) == 1:
            out += [f"the {SIZE_WORDS[o['size']]} {o['shape']}"]
    return out


def _multi(rng, objects):
    options = []
    for key in ("color", "shape"):
        for value in sorted({o[key] for o in objects}):  # a set's order changes with PYTHONHASHSEED
            found = _matches(objects, **{key: value})
            if len(found) >= 2:
                options.append((key, value, found))
    if not options:
        return None
    key, value, found = options[int(rng.integers(len(options)))]
    if key == "shape":
        texts = (
            [f"both {PLURAL[value]}", f"the two {PLURAL[value]}"] if len(found) == 2 else [f"all the {PLURAL[value]}"]
        )
        texts.append(f"every {value}")
    else:
        texts = [f"all the {value} shapes", f"every {value} item", f"the {value} ones"]
    return texts, found


def _no_target(rng, objects):
    present = {(o["color"], o["shape"]) for o in objects}
    colors = sorted({o["color"] for o in objects})
    shapes = sorted({o["shape"] for o in objects})
    pool = [(c, s) for c in colors for s in shapes if (c, s) not in present]
    if not pool or rng.random() < 0.3:
        pool = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    color, shape = pool[int(rng.integers(len(pool)))]
    return [f"the {color} {shape}", f"a {shape} that is {color}", f"the {shape} coloured {color}"]


def write_heldout(root, train_refs=2400, eval_refs=300, seed=1234):
    """Write the data set under `root`; returns {split: number of refs}."""
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images", "train2014")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "grefcoco"), exist_ok=True)
    images, annotations, refs = [], [], []
    counts = {}
    targets = {"train": train_refs, "val": eval_refs, "testA": eval_refs, "testB": eval_refs}
    image_id, ann_id, ref_id, sent_id = 500000, 900000, 1, 1
    for split, wanted in targets.items():
        counts[split] = 0
        while counts[split] < wanted:
            canvas, objects = _scene(rng, image_id)
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
            canvas.save(os.path.join(image_dir, file_name), quality=92)
            images.append({"id": image_id, "file_name": file_name, "width": canvas.width, "height": canvas.height})
            ids = []
            for o in objects:
                flat = [round(v, 2) for xy in o["poly"] for v in xy]
                xs, ys = flat[0::2], flat[1::2]
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": SHAPES.index(o["shape"]) + 1,
                        "segmentation": [flat],
                        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                        "area": 0.0,
                        "iscrowd": 0,
                    }
                )
                ids.append(ann_id)
                ann_id += 1
            chosen = []
            for index in rng.permutation(len(objects))[:2]:
                texts = _single_sentences(rng, objects, int(index))
                if texts:
                    chosen.append((texts, [ids[int(index)]], [objects[int(index)]["shape"]]))
            roll = rng.random()
            if roll < 0.5:
                found = _multi(rng, objects)
                if found:
                    chosen.append((found[0], [ids[i] for i in found[1]], [objects[i]["shape"] for i in found[1]]))
            if roll > 0.35:
                chosen.append((_no_target(rng, objects), [-1], None))
            for texts, ann_ids, shapes in chosen:
                picks = rng.permutation(len(texts))[: int(rng.integers(1, 3))]
                sentences = []
                for k in picks:
                    sentences.append(
                        {"raw": texts[k], "sent": texts[k], "tokens": texts[k].split(), "sent_id": sent_id}
                    )
                    sent_id += 1
                refs.append(
                    {
                        "ref_id": ref_id,
                        "image_id": image_id,
                        "ann_id": ann_ids,
                        "category_id": [-1] if shapes is None else [SHAPES.index(s) + 1 for s in shapes],
                        "no_target": shapes is None,
                        "split": split,
                        "sentences": sentences,
                        "sent_ids": [s["sent_id"] for s in sentences],
                        "file_name": file_name,
                    }
                )
                ref_id += 1
                counts[split] += 1
            image_id += 1
    with open(os.path.join(root, "grefcoco", "grefs(unc).json"), "w") as f:
        json.dump(refs, f)
    with open(os.path.join(root, "grefcoco", "instances.json"), "w") as f:
        categories = [{"id": i + 1, "name": s} for i, s in enumerate(SHAPES)]
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the held-out gRefCOCO-layout data set.")
    parser.add_argument("root")
    parser.add_argument("--train_refs", type=int, default=2400)
    parser.add_argument("--eval_refs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    print(write_heldout(args.root, args.train_refs, args.eval_refs, args.seed))
