"""Generalized expressions for the synthetic scenes: ones that name nothing, and ones that name several objects.

On top of a scene's single-target refs (data.synthetic), a generalized split adds refs of two kinds, in
about the proportions of gRefCOCO (`no_target_share` and `multi_target_share` of the rows):

- no target: a colour + shape (sometimes a size, a position or a relation to a present object) that no
  object of the scene has. Most reuse a colour and a shape that ARE in the scene, on different objects
  ("the red square" beside a red circle and a blue square), so attribute binding decides, not one word;
- several targets: every object an attribute description matches, when that is 2 or more ("both circles",
  "all the red shapes", "the two big squares"); the mask is the union of their visible masks.

Everything comes from `numpy.random.default_rng([seed, image_id, 1])`, so rows are reproducible and the
scene (drawn from `[seed, image_id]`) is unchanged: a generalized split has exactly the scenes and
single-target rows of the plain split with the same seed, plus the new rows.
"""

import numpy as np

_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
_POSITION_SUFFIX = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_RELATIONS = ("left of", "right of", "above", "below")


def _choose(rng, values):
    return values[int(rng.integers(len(values)))]


def _phrase(rng, size, color, shape, article=True):
    words = [w for w in (size, color, shape) if w]
    return " ".join((["the"] if article else []) + words)


def no_target_expression(rng, scene, colors, shapes, sizes, relations=True, positions=True):
    """A sentence that matches no object of `scene`, or None when the scene leaves no such combination."""
    present = {(o.color, o.shape) for o in scene.objects}
    scene_colors = sorted({o.color for o in scene.objects})
    scene_shapes = sorted({o.shape for o in scene.objects})
    # Hard negatives first: a present colour with a present shape, never together.
    hard = [(c, s) for c in scene_colors for s in scene_shapes if (c, s) not in present]
    easy = [(c, s) for c in colors for s in shapes if (c, s) not in present]
    pool = hard if hard and rng.random() < 0.7 else easy
    if not pool:
        return None
    color, shape = _choose(rng, pool)
    size = _choose(rng, sizes) if sizes and rng.random() < 0.2 else None
    article = rng.random() < 0.8
    phrase = _phrase(rng, size, color, shape, article)
    roll = rng.random()
    if positions and roll < 0.3:
        position = _choose(rng, tuple(_POSITION_SUFFIX))
        return (
            f"{position} {phrase}" if rng.random() < 0.3 and not article else f"{phrase} {_POSITION_SUFFIX[position]}"
        )
    if relations and roll < 0.5:
        anchor = _choose(rng, scene.objects)
        return f"{phrase} {_choose(rng, _RELATIONS)} the {anchor.color} {anchor.shape}"
    return phrase


def multi_target_expression(rng, scene, sizes_enabled=True):
    """(sentence, object indices) naming 2+ objects by attributes, or None when no description matches several."""
    keys = ("size", "color", "shape") if sizes_enabled else ("color", "shape")
    groups = {}
    for obj in scene.objects:
        for subset in (("color",), ("shape",), ("color", "shape"), ("size", "shape"), ("size", "color")):
            if not set(subset) <= set(keys):
                continue
            groups.setdefault(tuple((k, getattr(obj, k)) for k in subset), []).append(obj.index)
    options = [(attrs, idx) for attrs, idx in groups.items() if len(idx) >= 2]
    if not options:
        return None
    attributes, indices = _choose(rng, options)
    values = dict(attributes)
    adjectives = [values[k] for k in ("size", "color") if k in values]
    noun = _PLURAL[values["shape"]] if "shape" in values else _choose(rng, ("shapes", "objects"))
    body = " ".join(adjectives + [noun])
    if len(indices) == 2:
        templates = (f"both {body}", f"the two {body}", f"both the {body}")
    else:
        templates = (f"all the {body}", f"all {body}", f"every one of the {body}")
    return _choose(rng, templates), sorted(indices)


def generalized_refs(scene, num_single_rows, config, colors, shapes, sizes):
    """[(kind, sentence, object indices)] to add to a scene: kind "none" (no index) or "multi"."""
    rng = np.random.default_rng([config.seed, int(scene.image_id), 1])
    a, b = config.no_target_share, config.multi_target_share
    expected = num_single_rows * (a + b) / max(1e-9, 1.0 - a - b)
    count = int(expected) + int(rng.random() < expected - int(expected))
    refs, used = [], set()
    for _ in range(count):
        if rng.random() < a / (a + b):
            sentence = no_target_expression(rng, scene, colors, shapes, sizes, config.relations, config.positions)
            entry = None if sentence is None else ("none", sentence, [])
        else:
            found = multi_target_expression(rng, scene, config.sizes)
            entry = None if found is None else ("multi", found[0], found[1])
        if entry is not None and entry[1] not in used:
            used.add(entry[1])
            refs.append(entry)
    return refs
