"""The built-in synthetic referring-segmentation data: drawn scenes of coloured shapes.

Runs with no downloads and is the project's default data. Each scene holds 2-5 objects (4 shapes,
6 colours, 2 sizes) on a textured background. Distractors are drawn to share attributes with the
target (same colour other shape, same shape other colour, same colour and shape other size, exact
twins), so no single word family singles it out, and every expression is checked to be TRUE and
UNIQUE for its object under these meanings (the generator adds a safety margin on top):

- colour, shape and size words: equality with the object's attributes. "big" and "small" are two
  size classes whose sides differ by at least 1.35x; they compare objects within one scene.
- "left" / "right" / "top" / "bottom": the object with the smallest / largest centre x / y among the
  objects the expression's attribute words match; "middle": the one between the other two of
  exactly three matches. Position words never refer to the whole image on their own.
- "X left of Y" (right of, above, below): Y is singled out by attribute words alone, and X's centre
  lies left of Y's by more than `relation_margin / 2` of the image width (height for above/below);
  no other object matching X's words does.

Only "left" and "right" name horizontal directions, so swapping the two words is the exact text
counterpart of a horizontal flip (the flip augmentation relies on that).

Everything in a scene comes from `numpy.random.default_rng([seed, image_id])`: a row's scene, with
the masks of all its objects (the random-object baseline needs them), is regenerated from its
`image_id` and the generator config, which `build_synthetic_dataset` stores in `info.description`.
"""

import dataclasses
import io
import json
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict, DatasetInfo
from PIL import Image, ImageDraw

from .schema import CANONICAL_FEATURES

# Chosen far apart in RGB (smallest pairwise distance ~105) and away from the grey background.
COLORS = {
    "red": (214, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 85, 215),
    "yellow": (232, 205, 35),
    "purple": (140, 60, 190),
    "cyan": (30, 190, 200),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "big")
POSITIONS = ("left", "right", "top", "bottom", "middle")
RELATIONS = ("left of", "right of", "above", "below")
ATTRIBUTE_KEYS = ("size", "color", "shape")  # also the English adjective order

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SCENES_PER_SPLIT = 10**8  # image_id = split code * SCENES_PER_SPLIT + scene index
MAX_OBJECTS = 8  # ann_id = image_id * MAX_OBJECTS + object index
MAX_SENTENCES = 4  # sent_id = ref_id * MAX_SENTENCES + sentence index
CONFIG_MARKER = "asda-synthetic-config: "
# `--dataset_config generalized`: about gRefCOCO's proportions of no-target and multi-target expressions.
GENERALIZED = {"no_target_share": 0.18, "multi_target_share": 0.2}
GENERALIZED_REF_BASE = 10**12  # ref ids of generalized refs: base + image_id * 16 + k (single refs are ann ids)

# Weights of the expression kinds when several can describe a target; descriptions with more
# attribute words than needed are kept rare so that each word usually matters.
_KIND_WEIGHTS = {"attribute": 0.4, "position": 0.3, "relation": 0.3}
_REDUNDANT_WEIGHT = 0.15


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides what a scene looks like (the row counts do not)."""

    seed: int = 0
    min_objects: int = 2
    max_objects: int = 5
    relations: bool = True  # "the circle left of the blue square"
    positions: bool = True  # "the circle on the left"
    sizes: bool = True  # "the big circle"
    num_colors: int = len(COLORS)
    num_shapes: int = len(SHAPES)
    min_side: int = 96
    max_side: int = 192
    max_aspect: float = 1.6
    small_scale: tuple = (0.22, 0.28)  # object side as a fraction of the image's short side
    big_scale: tuple = (0.38, 0.46)
    min_separation: float = 0.85  # centre distance / mean side; < 1 allows some occlusion
    min_visible: float = 0.7  # share of an object's pixels that must stay visible
    position_margin: float = 0.12  # gap (fraction of width/height) to the next matching object
    relation_margin: float = 0.16
    max_refs_per_scene: int = 3
    max_sentences_per_ref: int = 2
    noise: int = 4  # amplitude of the grey grain
    # Generalized expressions (data.synthetic_generalized): shares of the rows that name nothing / several objects.
    no_target_share: float = 0.0
    multi_target_share: float = 0.0

    def __post_init__(self):
        # Lists come back from JSON; the dataclass is frozen, hence object.__setattr__.
        for name in ("small_scale", "big_scale"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        checks = [
            ("min_objects", 2 <= self.min_objects, "must be >= 2"),
            (
                "max_objects",
                self.min_objects <= self.max_objects <= MAX_OBJECTS,
                f"must be in [min_objects, {MAX_OBJECTS}]",
            ),
            ("num_colors", 2 <= self.num_colors <= len(COLORS), f"must be in [2, {len(COLORS)}]"),
            ("num_shapes", 2 <= self.num_shapes <= len(SHAPES), f"must be in [2, {len(SHAPES)}]"),
            ("min_side", 32 <= self.min_side <= self.max_side, "must be in [32, max_side]"),
            ("max_aspect", self.max_aspect >= 1.0, "must be >= 1"),
            (
                "small_scale",
                0 < self.small_scale[0] <= self.small_scale[1] < self.big_scale[0],
                "must lie below big_scale",
            ),
            ("big_scale", self.big_scale[0] <= self.big_scale[1] <= 0.8, "must be increasing and <= 0.8"),
            ("max_refs_per_scene", self.max_refs_per_scene >= 1, "must be >= 1"),
            (
                "max_sentences_per_ref",
                1 <= self.max_sentences_per_ref <= MAX_SENTENCES,
                f"must be in [1, {MAX_SENTENCES}]",
            ),
            ("min_visible", 0 < self.min_visible <= 1, "must be in (0, 1]"),
            ("noise", 0 <= self.noise <= 64, "must be in [0, 64]"),
            ("no_target_share", 0 <= self.no_target_share < 1, "must be in [0, 1)"),
            (
                "multi_target_share",
                0 <= self.multi_target_share and self.no_target_share + self.multi_target_share < 1,
                "must be >= 0, with no_target_share + multi_target_share < 1",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)!r} {rule}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SyntheticConfig":
        return cls(**json.loads(text))


@dataclass
class SceneObject:
    index: int
    color: str
    shape: str
    size: str
    cx: float  # centre of the drawn shape, pixels
    cy: float
    side: float
    mask: np.ndarray  # bool (H, W): the VISIBLE pixels (later objects are drawn on top)

    def attribute(self, key: str) -> str:
        return getattr(self, key)


@dataclass(frozen=True)
class Expression:
    """What a sentence says, in structured form (the text is one rendering of it)."""

    attributes: tuple  # ((key, value), ...) in ATTRIBUTE_KEYS order
    position: str | None = None
    relation: str | None = None
    anchor: int | None = None  # object index
    anchor_attributes: tuple = ()


@dataclass
class Ref:
    object_index: int
    expressions: list
    sentences: list


@dataclass
class Scene:
    image_id: int
    width: int
    height: int
    image: np.ndarray  # uint8 (H, W, 3)
    objects: list
    refs: list


# ----------------------------------------------------------------------------------------------
# Drawing


def _canvas_size(rng, config):
    long_side = int(rng.integers(config.min_side, config.max_side + 1))
    aspect = rng.uniform(1.0, config.max_aspect)
    short_side = max(config.min_side, int(round(long_side / aspect)))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)  # (W, H)


def _choose(rng, values, weights=None):
    # rng.choice costs ~20 us a call, a lot next to everything else a row needs.
    if weights is None:
        return values[int(rng.integers(len(values)))]
    cumulative = np.cumsum(weights)
    return values[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]


_DISTRACTOR_KINDS = ("same_color", "same_shape", "same_color_shape", "twin", "random")
_DISTRACTOR_WEIGHTS = (0.25, 0.25, 0.1, 0.05, 0.35)


def _design_attributes(rng, num_objects, config):
    """Target first, then distractors that each share some attributes with it."""
    colors = list(COLORS)[: config.num_colors]
    shapes = list(SHAPES)[: config.num_shapes]

    def other(values, value):
        return _choose(rng, [v for v in values if v != value])

    target = (_choose(rng, colors), _choose(rng, shapes), _choose(rng, SIZES))
    attributes = [target]
    for _ in range(num_objects - 1):
        kind = _choose(rng, _DISTRACTOR_KINDS, _DISTRACTOR_WEIGHTS)
        color, shape, size = target
        if kind == "same_color":
            shape, size = other(shapes, shape), _choose(rng, SIZES)
        elif kind == "same_shape":
            color, size = other(colors, color), _choose(rng, SIZES)
        elif kind == "same_color_shape":
            size = other(SIZES, size)
        elif kind == "random":
            color, shape, size = _choose(rng, colors), _choose(rng, shapes), _choose(rng, SIZES)
        attributes.append((color, shape, size))
    return attributes


# Farthest point of each shape from its centre, per unit of `side` (keeps shapes inside the image).
# Triangles and stars are drawn wider than `side` so that their AREA is not far below a circle's
# (0.57 vs 0.79 side^2): otherwise a "big" triangle could look no bigger than a "small" circle.
_EXTENT = {"circle": 0.5, "square": 0.86 / np.sqrt(2), "triangle": 1.15 / np.sqrt(3), "star": 0.62}


def _place(rng, side, shape, placed, width, height, config):
    reach = _EXTENT[shape] * side
    lo_x, hi_x, lo_y, hi_y = reach, width - reach, reach, height - reach
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(40):
        cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        if all(np.hypot(cx - o[0], cy - o[1]) >= config.min_separation * (side + o[2]) / 2 for o in placed):
            return cx, cy
    return None


def _polygon(cx, cy, radii, angles):
    return [(cx + r * np.sin(a), cy - r * np.cos(a)) for r, a in zip(radii, angles)]


def _draw_shape(shape, cx, cy, side, rotation, width, height):
    """The shape as a PIL "L" mask (255 inside) of the whole canvas."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        r = side / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        r = _EXTENT["square"] * side  # side 0.86: about the area of the circle
        angles = rotation + np.pi / 4 + np.arange(4) * np.pi / 2
        draw.polygon(_polygon(cx, cy, [r] * 4, angles), fill=255)
    elif shape == "triangle":
        r = _EXTENT["triangle"] * side  # equilateral, base width 1.15 * side
        angles = rotation + np.arange(3) * 2 * np.pi / 3
        draw.polygon(_polygon(cx, cy, [r] * 3, angles), fill=255)
    elif shape == "star":
        r = _EXTENT["star"] * side
        angles = rotation + np.arange(10) * np.pi / 5
        draw.polygon(_polygon(cx, cy, [r, 0.5 * r] * 5, angles), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return canvas


def _background(rng, width, height):
    """Grey with a colour tint and a linear shading ramp, uint8 (H, W, 3)."""
    grey = rng.uniform(75, 190)
    tint = rng.uniform(-12, 12, size=3)
    angle, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0, 30)
    ramp_x = amplitude * np.cos(angle) * (np.arange(width, dtype=np.float32) / width - 0.5)
    ramp_y = amplitude * np.sin(angle) * (np.arange(height, dtype=np.float32) / height - 0.5)
    shade = ramp_y[:, None] + ramp_x[None, :]
    image = np.empty((height, width, 3), dtype=np.uint8)
    # One channel at a time: numpy broadcasting over a trailing axis of 3 is ~10x slower.
    for c in range(3):
        image[..., c] = np.clip(np.rint(shade + (grey + tint[c])), 0, 255)
    return image


def _add_grain(rng, image, amplitude):
    """Grey noise in 2x2 blocks: reads as film grain and costs half the PNG bytes of per-pixel noise."""
    height, width = image.shape[:2]
    noise = rng.integers(-amplitude, amplitude + 1, size=((height + 1) // 2, (width + 1) // 2), dtype=np.int16)
    noise = noise.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    out = np.empty_like(image)
    for c in range(3):
        out[..., c] = np.clip(image[..., c] + noise, 0, 255)
    return out


def _try_scene(rng, image_id, config):
    width, height = _canvas_size(rng, config)
    short_side = min(width, height)
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    placed = []  # (cx, cy, side, color, shape, size)
    for k, (color, shape, size) in enumerate(_design_attributes(rng, num_objects, config)):
        # A big object that does not fit is tried once more as a small one.
        for size_try in (size, "small") if size == "big" else (size,):
            scale = config.big_scale if size_try == "big" else config.small_scale
            side = rng.uniform(*scale) * short_side
            spot = _place(rng, side, shape, placed, width, height, config)
            if spot is not None:
                placed.append((spot[0], spot[1], side, color, shape, size_try))
                break
        else:
            if k == 0:
                return None  # the designed target must be there
    if len(placed) < config.min_objects:
        return None

    order = rng.permutation(len(placed))  # list order = drawing order
    rotations = rng.uniform(-0.2, 0.2, size=len(placed))
    drawn = [
        _draw_shape(placed[j][4], placed[j][0], placed[j][1], placed[j][2], rotations[i], width, height)
        for i, j in enumerate(order)
    ]
    full = [np.asarray(d) > 0 for d in drawn]
    covered = np.zeros((height, width), dtype=bool)
    objects = [None] * len(full)
    for i in reversed(range(len(full))):
        visible = full[i] & ~covered
        covered |= full[i]
        if np.count_nonzero(visible) < config.min_visible * np.count_nonzero(full[i]):
            return None
        cx, cy, side, color, shape, size = placed[order[i]]
        objects[i] = SceneObject(i, color, shape, size, float(cx), float(cy), float(side), visible)

    image = _background(rng, width, height)
    for obj, mask in zip(objects, full):
        color = np.asarray(COLORS[obj.color]) + rng.integers(-12, 13, size=3)
        for c in range(3):  # per channel: a (H, W, 3)[mask] assignment is ~5x slower
            image[..., c][mask] = color[c]
    if config.noise:
        image = _add_grain(rng, image, config.noise)

    designed_target = int(np.flatnonzero(order == 0)[0])
    refs = _make_refs(rng, objects, designed_target, width, height, config)
    if not refs:
        return None
    return Scene(image_id, width, height, image, objects, refs)


# ----------------------------------------------------------------------------------------------
# Expressions


def _attribute_subsets(config):
    return _ATTRIBUTE_SUBSETS[config.sizes]


def _subsets_of(keys):
    subsets = [()]
    for key in keys:
        subsets += [s + (key,) for s in subsets]
    # Keep ATTRIBUTE_KEYS order inside each subset (it is the adjective order).
    return [tuple(k for k in ATTRIBUTE_KEYS if k in s) for s in subsets]


_ATTRIBUTE_SUBSETS = {True: _subsets_of(ATTRIBUTE_KEYS), False: _subsets_of(("color", "shape"))}


class _Matcher:
    """Which objects each attribute description matches (computed once per scene)."""

    def __init__(self, objects, subsets):
        self.groups = {}
        for subset in subsets:
            for obj in objects:
                key = tuple((k, obj.attribute(k)) for k in subset)
                self.groups.setdefault(key, []).append(obj)

    def __call__(self, attributes):
        return self.groups.get(attributes, [])


def _position_ok(target, matches, position, width, height, margin):
    others = [o for o in matches if o is not target]
    if position == "left":
        return all(o.cx - target.cx >= margin * width for o in others)
    if position == "right":
        return all(target.cx - o.cx >= margin * width for o in others)
    if position == "top":
        return all(o.cy - target.cy >= margin * height for o in others)
    if position == "bottom":
        return all(target.cy - o.cy >= margin * height for o in others)
    # middle: exactly three matches, one clearly on each side
    return (
        len(others) == 2
        and sum(target.cx - o.cx >= margin * width for o in others) == 1
        and sum(o.cx - target.cx >= margin * width for o in others) == 1
    )


def _relation_offset(obj, anchor, relation, width, height):
    """How far (as a fraction of the image side) `obj` lies in `relation` to `anchor`."""
    if relation == "left of":
        return (anchor.cx - obj.cx) / width
    if relation == "right of":
        return (obj.cx - anchor.cx) / width
    if relation == "above":
        return (anchor.cy - obj.cy) / height
    if relation == "below":
        return (obj.cy - anchor.cy) / height
    raise ValueError(f"unknown relation {relation!r}")


def _unique_descriptions(matcher):
    """object index -> the attribute tuples that single it out on their own."""
    described = {}
    for attributes, matches in matcher.groups.items():
        if attributes and len(matches) == 1:
            described.setdefault(matches[0].index, []).append(attributes)
    return described


def _candidates(target, objects, matcher, described, width, height, config):
    """All (kind, Expression, weight) that are true and unique for `target`."""
    out = [("attribute", Expression(a), len(a)) for a in described.get(target.index, [])]
    related = []  # (anchor, relation, objects clearly NOT in that relation) where the target clearly is
    for anchor in objects if config.relations else ():
        if anchor is target or anchor.index not in described:
            continue
        for relation in RELATIONS:
            if _relation_offset(target, anchor, relation, width, height) >= config.relation_margin:
                unrelated = {o.index for o in objects if _relation_offset(o, anchor, relation, width, height) <= 0}
                related.append((anchor, relation, unrelated))
    for subset in _attribute_subsets(config):
        attributes = tuple((k, target.attribute(k)) for k in subset)
        matches = matcher(attributes)
        if len(matches) < 2:
            continue
        if config.positions:
            for position in POSITIONS:
                if _position_ok(target, matches, position, width, height, config.position_margin):
                    out.append(("position", Expression(attributes, position=position), len(attributes)))
        for anchor, relation, unrelated in related:
            if all(o.index in unrelated for o in matches if o is not target):
                for anchor_attributes in described[anchor.index]:
                    expression = Expression(attributes, None, relation, anchor.index, anchor_attributes)
                    out.append(("relation", expression, len(attributes) + len(anchor_attributes)))
    # Weight: 1 for the fewest words of its kind, small for descriptions with words to spare.
    fewest = {}
    for kind, _, n in out:
        fewest[kind] = min(fewest.get(kind, n), n)
    return [(kind, e, 1.0 if n == fewest[kind] else _REDUNDANT_WEIGHT) for kind, e, n in out]


def _noun_phrase(rng, attributes, position=None, article=True):
    values = dict(attributes)
    adjectives = [values[k] for k in ("size", "color") if k in values]
    if "shape" in values:
        noun = values["shape"]
    else:
        noun = _choose(rng, ("shape", "object", "one") if adjectives else ("shape", "object"))
    words = adjectives + [noun]
    if position is not None:
        suffix = {
            "left": "on the left",
            "right": "on the right",
            "top": "at the top",
            "bottom": "at the bottom",
            "middle": "in the middle",
        }
        if rng.random() < 0.5:
            words = [position] + words
        else:
            words = words + suffix[position].split()
    return " ".join((["the"] if article else []) + words)


def _render_expression(rng, expression):
    """One sentence for `expression` (template and wording drawn from `rng`)."""
    article = rng.random() < 0.8  # RefCOCO-style expressions often drop the article
    phrase = _noun_phrase(rng, expression.attributes, expression.position, article)
    if expression.relation is None:
        return phrase
    relation = expression.relation
    if relation in ("left of", "right of") and rng.random() < 0.5:
        relation = "to the " + relation
    return f"{phrase} {relation} {_noun_phrase(rng, expression.anchor_attributes)}"


def _pick(rng, candidates, used):
    available = [c for c in candidates if c[1] not in used]
    if not available:
        return None
    kinds = [k for k in _KIND_WEIGHTS if any(c[0] == k for c in available)]
    kind = _choose(rng, kinds, [_KIND_WEIGHTS[k] for k in kinds])
    pool = [c for c in available if c[0] == kind]
    return _choose(rng, pool, [c[2] for c in pool])[1]


def _make_refs(rng, objects, designed_target, width, height, config):
    others = [o.index for o in objects if o.index != designed_target]
    order = [designed_target] + [int(i) for i in rng.permutation(others)]
    # At least two refs where the scene allows: two objects of one image told apart by words alone
    # are the most direct lesson in using the expression.
    num_refs = int(rng.integers(min(2, config.max_refs_per_scene), config.max_refs_per_scene + 1))
    matcher = _Matcher(objects, _attribute_subsets(config))
    described = _unique_descriptions(matcher)
    refs = []
    for index in order:
        if len(refs) == num_refs:
            break
        candidates = _candidates(objects[index], objects, matcher, described, width, height, config)
        if not candidates:
            continue
        expressions, sentences = [], []
        for _ in range(int(rng.integers(1, config.max_sentences_per_ref + 1))):
            expression = _pick(rng, candidates, expressions)
            if expression is None:
                break
            expressions.append(expression)
            sentences.append(_render_expression(rng, expression))
        refs.append(Ref(index, expressions, sentences))
    return refs


# ----------------------------------------------------------------------------------------------
# Scenes, rows, data sets


def generate_scene(image_id: int, config: SyntheticConfig) -> Scene:
    """The scene of `image_id`; the same (config, image_id) always gives the same scene."""
    rng = np.random.default_rng([config.seed, int(image_id)])
    for _ in range(200):
        scene = _try_scene(rng, int(image_id), config)
        if scene is not None:
            return scene
    raise RuntimeError(f"no valid scene for image_id={image_id} with {config}; loosen the size/object settings")


def _png(array, compress_level):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _bbox_xywh(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def scene_rows(scene: Scene, split: str, config: SyntheticConfig | None = None):
    """The canonical rows (one per sentence) of a scene; with a generalized `config`, its extra refs too."""
    # Level 1: the noisy background makes higher levels slow for little gain.
    image = {"bytes": _png(scene.image, compress_level=1), "path": None}
    rows = []
    for ref in scene.refs:
        obj = scene.objects[ref.object_index]
        ann_id = scene.image_id * MAX_OBJECTS + obj.index
        mask = {"bytes": _png(obj.mask.astype(np.uint8) * 255, compress_level=6), "path": None}
        bbox = _bbox_xywh(obj.mask)
        for k, sentence in enumerate(ref.sentences):
            sent_id = ann_id * MAX_SENTENCES + k
            rows.append(
                {
                    "sample_id": f"{ann_id}_{sent_id}",
                    "image_id": scene.image_id,
                    "ref_id": ann_id,  # one ref per object, as in REFER
                    "ann_id": ann_id,
                    "sent_id": sent_id,
                    "category_id": SHAPES.index(obj.shape) + 1,
                    "split": split,
                    "sentence": sentence,
                    "image": image,
                    "mask": mask,
                    "bbox": bbox,
                    "width": scene.width,
                    "height": scene.height,
                    "source": "synthetic",
                    "no_target": False,
                    "num_targets": 1,
                }
            )
    if config is not None and (config.no_target_share > 0 or config.multi_target_share > 0):
        rows += _generalized_rows(scene, split, config, len(rows), image)
    return rows


def _generalized_rows(scene, split, config, num_single_rows, image):
    from .synthetic_generalized import generalized_refs

    colors, shapes = list(COLORS)[: config.num_colors], list(SHAPES)[: config.num_shapes]
    sizes = SIZES if config.sizes else ()
    rows = []
    for k, (kind, sentence, indices) in enumerate(
        generalized_refs(scene, num_single_rows, config, colors, shapes, sizes)
    ):
        ref_id = GENERALIZED_REF_BASE + scene.image_id * 16 + k
        mask = np.zeros((scene.height, scene.width), dtype=bool)
        for index in indices:
            mask |= scene.objects[index].mask
        first = scene.objects[indices[0]] if indices else None
        sent_id = ref_id * MAX_SENTENCES
        rows.append(
            {
                "sample_id": f"{ref_id}_{sent_id}",
                "image_id": scene.image_id,
                "ref_id": ref_id,
                "ann_id": scene.image_id * MAX_OBJECTS + first.index if first else -1,
                "sent_id": sent_id,
                "category_id": SHAPES.index(first.shape) + 1 if first else -1,
                "split": split,
                "sentence": sentence,
                "image": image,
                "mask": {"bytes": _png(mask.astype(np.uint8) * 255, compress_level=6), "path": None},
                "bbox": _bbox_xywh(mask) if indices else [0.0, 0.0, 0.0, 0.0],
                "width": scene.width,
                "height": scene.height,
                "source": "synthetic",
                "no_target": kind == "none",
                "num_targets": len(indices),
            }
        )
    return rows


def generate_split(split: str, num_rows: int, config: SyntheticConfig) -> Dataset:
    if split not in SPLIT_CODES:
        raise ValueError(f"split={split!r}: the synthetic data has splits {list(SPLIT_CODES)}")
    if not 0 <= num_rows <= SCENES_PER_SPLIT:
        raise ValueError(f"num_rows={num_rows} for split {split!r} must be in [0, {SCENES_PER_SPLIT}]")
    columns = {name: [] for name in CANONICAL_FEATURES}
    scene_index, count = 0, 0
    while count < num_rows:
        image_id = SPLIT_CODES[split] * SCENES_PER_SPLIT + scene_index
        for row in scene_rows(generate_scene(image_id, config), split, config)[: num_rows - count]:
            for name, value in row.items():
                columns[name].append(value)
            count += 1
        scene_index += 1
    info = DatasetInfo(
        features=CANONICAL_FEATURES,
        description=f"ASDA synthetic referring segmentation (coloured shapes).\n{CONFIG_MARKER}{config.to_json()}",
        config_name="synthetic",
    )
    return Dataset.from_dict(columns, features=CANONICAL_FEATURES, info=info, split=split)


def build_synthetic_dataset(
    num_train: int = 20000, num_val: int = 1000, num_test: int = 1000, seed: int = 0, **config_kwargs
) -> DatasetDict:
    """Splits train / val / test (a split asked with 0 rows is left out) in the canonical schema.

    `config_kwargs` are `SyntheticConfig` fields, e.g. `relations=False, max_objects=3` for an easier
    set. Splits never share a scene: their image_ids come from disjoint ranges.
    """
    known = {f.name for f in dataclasses.fields(SyntheticConfig)} - {"seed"}
    unknown = sorted(set(config_kwargs) - known)
    if unknown:
        raise ValueError(f"build_synthetic_dataset got unknown arguments {unknown}; known: {sorted(known)}")
    config = SyntheticConfig(seed=seed, **config_kwargs)
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    return DatasetDict({split: generate_split(split, n, config) for split, n in sizes.items() if n > 0})


def synthetic_config_from_dataset(dataset: Dataset) -> SyntheticConfig:
    """The generator config stored by `generate_split` in the data set's info."""
    description = dataset.info.description or ""
    if CONFIG_MARKER not in description:
        raise ValueError(
            "this data set carries no synthetic generator config in info.description (was it made by "
            "build_synthetic_dataset, or converted to a format that drops the info?); pass the config explicitly"
        )
    return SyntheticConfig.from_json(description.split(CONFIG_MARKER, 1)[1].strip())


def scene_for_row(row: dict, config: SyntheticConfig) -> Scene:
    """Regenerates the scene of a canonical synthetic row (all objects, with masks)."""
    if row.get("source") != "synthetic":
        raise ValueError(f"row {row.get('sample_id')!r} has source={row.get('source')!r}, not 'synthetic'")
    return generate_scene(int(row["image_id"]), config)


def referred_object(row: dict, scene: Scene, mask: np.ndarray, config: SyntheticConfig) -> SceneObject:
    """The object a single-target row refers to. A regenerated mask unlike the row's `mask` is an error naming the
    row (the data set was made with another generator config), never a silently wrong number."""
    index = row["ann_id"] % MAX_OBJECTS
    if index >= len(scene.objects) or not np.array_equal(scene.objects[index].mask, mask):
        raise ValueError(
            f"row {row['sample_id']}: the scene regenerated from image_id {row['image_id']} does not match the "
            f"stored mask; was the data set made with another config than {config}?"
        )
    return scene.objects[index]
