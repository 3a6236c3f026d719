"""COCO segmentations (polygons or RLE) to full-resolution binary masks, plus small bbox helpers.

All parts of one object are merged by UNION: the REFER reference code sums the decoded parts, so
overlapping polygons give 2 there (and 254 once scaled by 255 into uint8); here a pixel is 0 or 1.

pycocotools is used when importable (it defines COCO's rasterisation). Without it, polygons are drawn
with PIL on a 7x supersampled canvas and sampled at pixel centres, and RLE is decoded in numpy.
The RLE fallback is exact. The polygon fallback is exact for polygons whose vertices lie on integer
coordinates and whose edges are axis-aligned; for general polygons it differs from pycocotools only
on boundary pixels (pycocotools snaps vertices to 1/5 px): on 200 random polygons of radius 5-40 px
the mean IoU between the two is about 0.98 (tests/test_data_formats.py checks a few).
"""

import io
import math

import numpy as np
from PIL import Image, ImageDraw

try:
    from pycocotools import mask as coco_mask
except ImportError:  # optional: the `coco` extra
    coco_mask = None

# Supersampling of the PIL fallback; odd, so that one supersampled pixel sits on each pixel centre.
_SUPERSAMPLE = 7


class SegmentationError(ValueError):
    """A segmentation that cannot be decoded into a mask; the message says why."""


def decode_segmentation(segmentation, height, width, use_pycocotools=None):
    """Decode a COCO segmentation into an (height, width) uint8 mask of 0/1, merging parts by union.

    Accepts a list of polygons `[[x1, y1, x2, y2, ...], ...]`, a single flat polygon `[x1, y1, ...]`,
    an RLE dict `{"size": [h, w], "counts": list | str}` or a list of RLE dicts. Polygon parts with
    fewer than 3 points have no area and are skipped (pycocotools would read a 4-number part as a box).
    Raises `SegmentationError` for anything malformed.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise SegmentationError(f"image size must be positive, got height={height}, width={width}")
    use_pycocotools = coco_mask is not None if use_pycocotools is None else use_pycocotools
    if use_pycocotools and coco_mask is None:
        raise ImportError("use_pycocotools=True needs pycocotools (pip install pycocotools).")

    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, (list, tuple)) or len(segmentation) == 0:
        raise SegmentationError(f"expected polygons or RLE, got {_describe(segmentation)}")
    if all(isinstance(part, dict) for part in segmentation):
        masks = [_decode_rle(part, height, width, use_pycocotools) for part in segmentation]
        return np.logical_or.reduce(masks).astype(np.uint8)
    if all(_is_number(v) for v in segmentation):
        segmentation = [segmentation]  # one flat polygon (lmms-lab)
    polygons = [_check_polygon(part) for part in segmentation]
    polygons = [p for p in polygons if len(p) >= 6]
    if not polygons:
        raise SegmentationError("no polygon has at least 3 points")
    if use_pycocotools:
        rles = coco_mask.frPyObjects([p.tolist() for p in polygons], height, width)
        return coco_mask.decode(coco_mask.merge(rles, intersect=False)).astype(np.uint8)
    return _polygons_to_mask_pil(polygons, height, width)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _describe(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_polygon(part):
    if not isinstance(part, (list, tuple, np.ndarray)) or not all(_is_number(v) for v in part):
        raise SegmentationError(f"a polygon must be a list of numbers, got {_describe(part)}")
    coords = np.asarray(part, dtype=np.float64)
    if len(coords) % 2:
        raise SegmentationError(f"a polygon needs an even number of coordinates, got {len(coords)}")
    if not np.isfinite(coords).all():
        raise SegmentationError("a polygon has a non-finite coordinate")
    return coords


def _polygons_to_mask_pil(polygons, height, width):
    mask = np.zeros((height, width), dtype=np.uint8)
    s = _SUPERSAMPLE
    for coords in polygons:
        xs, ys = coords[0::2], coords[1::2]
        # Only the polygon's bounding box is drawn, to keep the supersampled canvas small.
        x0, x1 = max(math.floor(xs.min()), 0), min(math.ceil(xs.max()) + 1, width)
        y0, y1 = max(math.floor(ys.min()), 0), min(math.ceil(ys.max()) + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue  # entirely outside the image
        canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
        # PIL fills a pixel when its integer coordinate is inside; the -0.5 shift turns that into a
        # test of the supersampled pixel's centre.
        points = [((x - x0) * s - 0.5, (y - y0) * s - 0.5) for x, y in zip(xs, ys)]
        ImageDraw.Draw(canvas).polygon(points, fill=1)
        centres = np.asarray(canvas)[(s - 1) // 2 :: s, (s - 1) // 2 :: s]
        mask[y0:y1, x0:x1] |= centres
    return mask


def _decode_rle(rle, height, width, use_pycocotools):
    if "counts" not in rle or "size" not in rle:
        raise SegmentationError(f"an RLE needs 'size' and 'counts', got keys {sorted(rle)}")
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise SegmentationError(f"RLE size {size} differs from the image size [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):
        counts = [int(c) for c in counts]
        if any(c < 0 for c in counts) or sum(counts) != height * width:
            raise SegmentationError(f"RLE counts must be non-negative and sum to {height * width}")
        if use_pycocotools:
            return coco_mask.decode(coco_mask.frPyObjects(rle, height, width)).astype(np.uint8)
        return _counts_to_mask(counts, height, width)
    if isinstance(counts, (str, bytes)):
        text = counts.decode("ascii") if isinstance(counts, bytes) else counts
        if use_pycocotools:
            try:
                return coco_mask.decode({"size": size, "counts": text.encode("ascii")}).astype(np.uint8)
            except Exception as err:  # pycocotools raises bare Exceptions on bad strings
                raise SegmentationError(f"undecodable compressed RLE: {err}") from err
        return _counts_to_mask(_decompress_counts(text), height, width)
    raise SegmentationError(f"RLE counts must be a list or a string, got {type(counts).__name__}")


def _decompress_counts(text):
    """COCO's compressed RLE string: each count in 5-bit groups (char - 48), bit 0x20 = more groups
    follow, bit 0x10 of the last group = negative; counts after the second are deltas to count i-2."""
    counts, pos = [], 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise SegmentationError("compressed RLE string ends inside a count")
            group = ord(text[pos]) - 48
            if not 0 <= group < 64:
                raise SegmentationError(f"invalid character {text[pos]!r} in compressed RLE")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            shift += 5
            pos += 1
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _counts_to_mask(counts, height, width):
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise SegmentationError(f"RLE counts must be non-negative and sum to {height * width}")
    values = np.arange(len(counts), dtype=np.uint8) % 2  # runs alternate, starting with background
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T.copy()  # RLE runs down the columns


def mask_to_png(mask):
    """A 0/1 (or bool) mask as single-channel PNG bytes with values 0/255."""
    buffer = io.BytesIO()
    # zlib level 3: ~1.8x faster than the default 6 on a 640x480 mask, and still ~2 KB.
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def xyxy_to_xywh(box):
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def mask_to_xywh(mask):
    """Tight COCO box [x, y, w, h] (pixel edges) around the foreground; None for an empty mask."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]
