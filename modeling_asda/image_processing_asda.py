# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Image processor for ASDA: letterbox to a square, CLIP normalisation, and the inverse mapping of masks.

Geometry and resampling follow the published ASDA code (`utils/transforms.py::letterbox` and
`engine/engine.py::validate_epoch`):

* scale = image_size / max(h, w); the resized size is round(h * scale) x round(w * scale) (at least 1);
  the image sits centred, the odd pixel of padding going to the bottom / right.
* Images are resized with exact area interpolation (every output pixel is the area-weighted mean of
  the source pixels it covers), which is what the published `cv2.INTER_AREA` computes, in both
  directions. Masks use centre-aligned nearest neighbour.
* Padding uses the published colour (123.7, 116.3, 103.5) on the 0..255 scale (the ImageNet mean), also
  the fill of the published training-time affine augmentation, then CLIP mean/std normalisation.
* `post_process_masks` is the published evaluation order: sigmoid -> bilinear to image_size -> crop
  the padding -> bilinear to the original size -> `> threshold`.

Transparency is composited over the padding colour (not dropped): a transparent pixel carries no
content, and the padding colour is what the model sees wherever there is no image.
"""

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PUBLISHED_PAD_VALUE = (123.7, 116.3, 103.5)  # RGB on the 0..255 scale

# Floats are expected in [0, 1]; allow resampling overshoot of this much before calling it an error.
_FLOAT_TOLERANCE = 1e-3


class ASDAImageProcessorKwargs(ImagesKwargs, total=False):
    image_size: int
    pad_value: tuple[float, float, float]


# The settings `preprocess` takes per call (the rest of ImagesKwargs describes resize/crop steps ASDA does not have).
PER_CALL_SETTINGS = ("image_size", "image_mean", "image_std", "pad_value")


def _check_settings(image_size, image_mean, image_std, pad_value) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    for name, value in (("image_mean", image_mean), ("image_std", image_std), ("pad_value", pad_value)):
        if len(value) != 3:
            raise ValueError(f"{name} needs 3 values (RGB), got {value!r}")
    if any(s <= 0 for s in image_std):
        raise ValueError(f"image_std must be positive, got {image_std!r}")


def letterbox_geometry(height: int, width: int, image_size: int) -> tuple[int, int, int, int]:
    """(resized_height, resized_width, top, left) of an image of `height` x `width` letterboxed to `image_size`."""
    longest = max(height, width)
    resized_height = max(1, min(image_size, round(height * image_size / longest)))
    resized_width = max(1, min(image_size, round(width * image_size / longest)))
    return resized_height, resized_width, (image_size - resized_height) // 2, (image_size - resized_width) // 2


@functools.lru_cache(maxsize=64)  # data sets repeat a few image sizes; the tensors are never modified
def _area_weights(size_in: int, size_out: int) -> torch.Tensor:
    """Sparse (size_out, size_in) matrix of exact area resampling along one axis.

    Output pixel i covers the source interval [i*r, (i+1)*r) with r = size_in / size_out; its weight on
    source pixel j is |[j, j+1) and that interval| / r. At most ceil(r) + 1 sources per output.
    """
    ratio = size_in / size_out
    out_index = torch.arange(size_out, dtype=torch.float64)
    start, end = out_index * ratio, (out_index + 1) * ratio
    offsets = torch.arange(math.ceil(ratio) + 1, dtype=torch.float64)
    src_index = torch.floor(start)[:, None] + offsets[None, :]
    overlap = torch.minimum(end[:, None], src_index + 1) - torch.maximum(start[:, None], src_index)
    keep = (overlap > 1e-12) & (src_index < size_in)
    rows = out_index[:, None].expand_as(src_index)[keep].long()
    cols = src_index[keep].long()
    values = (overlap[keep] / ratio).float()
    indices = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(indices, values, (size_out, size_in), check_invariants=True).coalesce()


def area_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a (C, H, W) float tensor with exact area interpolation (cv2.INTER_AREA semantics)."""
    channels, in_height, in_width = image.shape
    if (in_height, in_width) == (height, width):
        return image
    rows = _area_weights(in_height, height)
    columns = _area_weights(in_width, width)
    # Two sparse matmuls: cost O(pixels), no dense (out x in) matrix and no per-pixel loop.
    out = torch.sparse.mm(rows, image.permute(1, 0, 2).reshape(in_height, channels * in_width))
    out = out.reshape(height, channels, in_width).permute(2, 1, 0).reshape(in_width, channels * height)
    out = torch.sparse.mm(columns, out)  # (width, channels * height)
    return out.reshape(width, channels, height).permute(1, 2, 0).contiguous()


def nearest_resize(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize (..., H, W) with centre-aligned nearest neighbour: each output takes the source under its centre."""
    in_height, in_width = mask.shape[-2:]
    rows = ((torch.arange(height, dtype=torch.float64) + 0.5) * (in_height / height)).long().clamp_(max=in_height - 1)
    cols = ((torch.arange(width, dtype=torch.float64) + 0.5) * (in_width / width)).long().clamp_(max=in_width - 1)
    return mask[..., rows, :][..., cols]


# ----------------------------------------------------------------------------------------------------
# Input conversion: anything image-like -> float32 (3, H, W) tensor in [0, 1].
# ----------------------------------------------------------------------------------------------------

_PIL_DIRECT_MODES = {"L", "LA", "RGB", "RGBA", "F"}


def _pil_to_array(image: Image.Image, index: int) -> np.ndarray:
    try:
        image.load()  # decode now, so a truncated or corrupt file is reported with its index
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"image {index}: could not decode the PIL image ({err})") from err
    mode = image.mode
    if mode in _PIL_DIRECT_MODES:
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if mode in ("La", "RGBa"):  # premultiplied alpha: undo it before compositing
        return np.asarray(image.convert(mode.upper()))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        # 32-bit integer images come from 16-bit PNG/TIFF files: read them on the 16-bit scale.
        data = np.asarray(image)
        if data.min() < 0 or data.max() > 65535:
            raise ValueError(
                f"image {index}: PIL mode 'I' is read as 16-bit (0..65535) but its values span "
                f"[{data.min()}, {data.max()}]; convert it to mode 'F' with values in [0, 1] first"
            )
        return data.astype(np.uint16)
    try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL knows their RGB conversion
        return np.asarray(image.convert("RGB"))
    except ValueError as err:
        raise ValueError(f"image {index}: cannot convert PIL mode {mode!r} to RGB ({err})") from err


def _unit_scale(data: np.ndarray, index: int) -> tuple[np.ndarray, float]:
    """Check the values fit the dtype's range; return (array torch can take, divisor mapping it to [0, 1])."""
    kind = data.dtype.kind
    if kind == "b":
        return data.view(np.uint8), 1.0
    if data.dtype == np.uint8:
        return data, 255.0
    if data.dtype == np.uint16:
        return data, 65535.0
    if kind in "iu":
        low, high = data.min(), data.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"image {index}: integer array of dtype {data.dtype} has values in [{low}, {high}]; expected "
                "0..255 (cast 16-bit data to uint16, or pass floats in [0, 1])"
            )
        return data.astype(np.uint8), 255.0
    if kind == "f":
        if not np.isfinite(data).all():
            raise ValueError(f"image {index}: float array contains NaN or infinite values")
        low, high = float(data.min()), float(data.max())
        if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            hint = " (it looks like 0..255 data: divide by 255)" if 0 <= low and high <= 255 else ""
            raise ValueError(f"image {index}: float values span [{low:g}, {high:g}], expected [0, 1]{hint}")
        return data, 1.0
    raise ValueError(f"image {index}: unsupported array dtype {data.dtype}")


def _to_hwc(data: np.ndarray, index: int, channels_first: bool) -> np.ndarray:
    """Put the channel axis last. Numpy arrays are read as HWC first, torch tensors as CHW first."""
    if data.ndim == 2:
        return data[:, :, None]
    if data.ndim != 3:
        raise ValueError(f"image {index}: expected a 2-D (H, W) or 3-D image, got shape {tuple(data.shape)}")
    first_is_channel, last_is_channel = data.shape[0] in (1, 2, 3, 4), data.shape[-1] in (1, 2, 3, 4)
    if first_is_channel and (channels_first or not last_is_channel):
        return np.moveaxis(data, 0, -1)
    if last_is_channel:
        return data
    raise ValueError(
        f"image {index}: shape {tuple(data.shape)} has no channel axis of size 1, 2, 3 or 4 (expected HW, HWC or CHW)"
    )


def _describe(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


def to_rgb_float(image, index: int, pad_value: Sequence[float]) -> torch.Tensor:
    """Convert one image (PIL, numpy, torch) to a float32 (3, H, W) tensor in [0, 1].

    Grey is replicated to RGB; alpha is composited over `pad_value` (RGB in [0, 1]).
    """
    if isinstance(image, Image.Image):
        data, channels_first = _pil_to_array(image, index), False
    elif isinstance(image, np.ndarray):
        data, channels_first = image, False
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype != torch.float64:
            tensor = tensor.float()  # half / bfloat16 have no numpy counterpart worth keeping
        data, channels_first = tensor.numpy(), True
    else:
        raise ValueError(
            f"image {index} is a {_describe(image)}; expected a PIL.Image.Image, numpy array or torch tensor "
            "(load files with PIL.Image.open)"
        )
    if data.ndim not in (2, 3):
        raise ValueError(f"image {index}: expected a 2-D (H, W) or 3-D image, got shape {tuple(data.shape)}")
    if 0 in data.shape:
        raise ValueError(f"image {index} has zero size (shape {tuple(data.shape)})")
    data, divisor = _unit_scale(np.ascontiguousarray(_to_hwc(np.asarray(data), index, channels_first)), index)

    hwc = torch.from_numpy(data if data.flags.writeable else data.copy())  # torch refuses read-only memory
    height, width, channels = hwc.shape
    color = hwc[..., :1].expand(height, width, 3) if channels in (1, 2) else hwc[..., :3]
    # One pass for dtype conversion and the move to channels-first; matters for multi-megapixel inputs.
    rgb = torch.empty(3, height, width, dtype=torch.float32).copy_(color.permute(2, 0, 1))
    if divisor != 1.0:
        rgb.div_(divisor)
    if hwc.dtype.is_floating_point:
        rgb.clamp_(0.0, 1.0)
    if channels in (2, 4):
        alpha = hwc[..., -1].to(torch.float32) / divisor
        if hwc.dtype.is_floating_point:
            alpha.clamp_(0.0, 1.0)
        pad = torch.tensor(pad_value, dtype=torch.float32)[:, None, None]
        rgb = torch.lerp(pad, rgb, alpha)  # rgb * alpha + pad * (1 - alpha)
    return rgb


def _as_batch(items, batch_ndim: int, name: str) -> list:
    """A list stays a list, an array/tensor with `batch_ndim` dimensions is a batch along its first axis,
    anything else is one item."""
    if isinstance(items, (list, tuple)):
        if len(items) == 0:
            raise ValueError(f"no {name} were given (empty list)")
        return list(items)
    if isinstance(items, (np.ndarray, torch.Tensor)) and items.ndim == batch_ndim:
        if items.shape[0] == 0:
            raise ValueError(f"no {name} were given (batch of size 0)")
        return list(items)
    return [items]


_PIL_MASK_MODES = {"1", "L", "P", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def to_mask(mask, index: int) -> torch.Tensor:
    """One mask (PIL, numpy, torch; (H, W), (1, H, W) or (H, W, 1)) -> bool (H, W) tensor, foreground = value > 0."""
    if isinstance(mask, Image.Image):
        try:
            # Single-band modes keep their values (P: palette index 0 is background); others go through grey.
            data = np.asarray(mask if mask.mode in _PIL_MASK_MODES else mask.convert("L"))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"mask {index}: could not decode the PIL image ({err})") from err
    elif isinstance(mask, torch.Tensor):
        data = mask.detach().cpu()
        data = data.float().numpy() if data.is_floating_point() else data.numpy()
    elif isinstance(mask, np.ndarray):
        data = mask
    else:
        raise ValueError(f"mask {index} is a {_describe(mask)}; expected a PIL image, numpy array or torch tensor")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"mask {index}: unsupported dtype {data.dtype}")
    if data.ndim == 3 and 1 in (data.shape[0], data.shape[-1]):
        data = data[0] if data.shape[0] == 1 else data[..., 0]
    if data.ndim != 2:
        raise ValueError(f"mask {index}: expected a 2-D (H, W) mask, got shape {tuple(data.shape)}")
    if 0 in data.shape:
        raise ValueError(f"mask {index} has zero size (shape {tuple(data.shape)})")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"mask {index} contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(data > 0))


class ASDAImageProcessor(BaseImageProcessor):
    r"""
    Letterbox image processor for ASDA.

    Args:
        image_size (`int`, *optional*, defaults to 416):
            Side of the square model input.
        image_mean (`tuple[float]`, *optional*, defaults to CLIP's mean):
            Per-channel mean for normalisation, images scaled to [0, 1].
        image_std (`tuple[float]`, *optional*, defaults to CLIP's std):
            Per-channel standard deviation for normalisation.
        pad_value (`tuple[float]`, *optional*, defaults to `(123.7, 116.3, 103.5)`):
            RGB padding colour on the 0..255 scale (the published code's). Also the background that
            transparent pixels are composited over.

    Inputs accepted by [`~ASDAImageProcessor.__call__`]: PIL images of any mode, numpy arrays (HW, HWC or CHW;
    uint8, uint16, bool, small integers in 0..255 or floats in [0, 1]) and torch tensors (CHW or HWC, same
    dtypes), single or as a list; a 4-D array or tensor is a batch. 1 or 2 channels are grey (+ alpha),
    3 are RGB, 4 are RGBA.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = ASDAImageProcessorKwargs

    def __init__(
        self,
        image_size: int = 416,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        pad_value: Sequence[float] = PUBLISHED_PAD_VALUE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_settings(image_size, image_mean, image_std, pad_value)
        self.image_size = image_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.pad_value = list(pad_value)

    # -- images ---------------------------------------------------------------------------------------

    def letterbox(self, image: torch.Tensor, image_size: int | None = None, pad_value=None) -> torch.Tensor:
        """Letterbox one float (3, H, W) tensor in [0, 1] to (3, S, S), not normalised."""
        size = self.image_size if image_size is None else image_size
        pad_value = self.pad_value if pad_value is None else pad_value
        height, width = image.shape[-2:]
        resized_height, resized_width, top, left = letterbox_geometry(height, width, size)
        canvas = torch.tensor(pad_value, dtype=torch.float32).div_(255.0)[:, None, None].repeat(1, size, size)
        canvas[:, top : top + resized_height, left : left + resized_width] = area_resize(
            image, resized_height, resized_width
        )
        return canvas

    def __call__(self, images, masks=None, return_tensors="pt", **kwargs) -> BatchFeature:
        return self.preprocess(images, masks=masks, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images, masks=None, return_tensors="pt", **kwargs) -> BatchFeature:
        """
        Letterbox and normalise images.

        Args:
            images: one image or a list of images (see the class docstring for the accepted kinds).
            masks (*optional*): one mask per image, same height and width as its image; returned
                letterboxed as `labels` (see [`~ASDAImageProcessor.letterbox_masks`]).
            return_tensors (`str`, defaults to `"pt"`): `"pt"` or `"np"`.
            image_size, image_mean, image_std, pad_value (*optional*): override the processor's settings for
                this call only (see the class arguments).

        Returns:
            [`BatchFeature`] with `pixel_values` (B, 3, S, S) float32, `original_sizes` (B, 2) int64 as
            (height, width), and `labels` (B, S, S) float32 in {0, 1} when masks are given.
        """
        unknown = sorted(set(kwargs) - set(PER_CALL_SETTINGS))
        if unknown:
            raise TypeError(
                f"ASDAImageProcessor got unexpected arguments: {unknown}; per call it takes {list(PER_CALL_SETTINGS)}"
            )
        settings = {
            name: getattr(self, name) if kwargs.get(name) is None else kwargs[name] for name in PER_CALL_SETTINGS
        }
        _check_settings(**settings)
        size, pad_value = settings["image_size"], settings["pad_value"]
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        pad_unit = [v / 255.0 for v in pad_value]
        rgb = [to_rgb_float(image, i, pad_unit) for i, image in enumerate(_as_batch(images, 4, "images"))]
        mean = torch.tensor(settings["image_mean"], dtype=torch.float32)[:, None, None]
        std = torch.tensor(settings["image_std"], dtype=torch.float32)[:, None, None]
        pixel_values = torch.stack([(self.letterbox(image, size, pad_value) - mean) / std for image in rgb])
        original_sizes = torch.tensor([image.shape[-2:] for image in rgb], dtype=torch.long)
        data = {"pixel_values": pixel_values, "original_sizes": original_sizes}

        if masks is not None:
            mask_tensors = [to_mask(mask, i) for i, mask in enumerate(_as_batch(masks, 3, "masks"))]
            if len(mask_tensors) != len(rgb):
                raise ValueError(f"got {len(rgb)} images but {len(mask_tensors)} masks; pass one mask per image")
            for i, (mask, image) in enumerate(zip(mask_tensors, rgb)):
                if mask.shape != image.shape[-2:]:
                    raise ValueError(
                        f"mask {i} is {mask.shape[0]}x{mask.shape[1]} but image {i} is "
                        f"{image.shape[-2]}x{image.shape[-1]} (height x width); a mask must match its image"
                    )
            data["labels"] = self._letterbox_mask_tensors(mask_tensors, size)
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        return BatchFeature(data=data)

    # -- masks ----------------------------------------------------------------------------------------

    def letterbox_masks(self, masks, size: int | None = None) -> torch.Tensor:
        """
        Letterbox masks exactly like their images, with nearest neighbour and 0 padding.

        Args:
            masks: a 2-D mask, a 3-D batch (B, H, W), or a list of masks (sizes may differ); PIL, numpy or
                torch. Foreground is value > 0 (the canonical masks are 0/255 PNGs).
            size (`int`, *optional*): output side, defaults to `image_size`. Another size (e.g. the model's
                mask resolution) resizes the letterboxed mask again with nearest neighbour.

        Returns:
            `torch.Tensor` (B, size, size) float32 in {0, 1}.
        """
        out = self._letterbox_mask_tensors(
            [to_mask(mask, i) for i, mask in enumerate(_as_batch(masks, 3, "masks"))], self.image_size
        )
        if size is not None and size != self.image_size:
            out = nearest_resize(out, size, size)
        return out

    def _letterbox_mask_tensors(self, masks: list[torch.Tensor], side: int) -> torch.Tensor:
        out = torch.zeros(len(masks), side, side, dtype=torch.float32)
        for i, mask in enumerate(masks):
            resized_height, resized_width, top, left = letterbox_geometry(*mask.shape, side)
            out[i, top : top + resized_height, left : left + resized_width] = nearest_resize(
                mask, resized_height, resized_width
            ).float()
        return out

    def post_process_masks(
        self,
        logits,
        original_sizes,
        threshold: float | None,
        target_logits=None,
        no_target_threshold: float = 0.5,
        return_scores: bool = False,
    ) -> list:
        """
        Map mask logits back to each original image (the published evaluation order).

        Args:
            logits (`torch.Tensor` of shape (B, 1, h, w) or (B, h, w)): mask logits at any resolution covering
                the letterboxed square (the model's output is image_size / 2).
            original_sizes: (B, 2) tensor or list of (height, width), as returned in `original_sizes`.
            threshold (`float` or `None`): probability above which a pixel is foreground, usually the model's
                `config.mask_threshold`. `None` returns the probabilities instead.
            target_logits (`torch.Tensor` of shape (B,), *optional*): `ASDAOutput.target_logits` of a model with
                a no-target head. A sample whose target probability is below `no_target_threshold` gets an
                empty mask (all False, or all-zero probabilities).
            no_target_threshold (`float`, defaults to 0.5): use the model's `config.no_target_threshold`.
            return_scores (`bool`, defaults to `False`): return one dict per image instead of the mask alone.

        Returns:
            `list[torch.Tensor]`: per image, a bool (or float probability) tensor of shape (height, width).
            With `return_scores`, per image a dict: `mask` (that tensor), `score` (the probability that the
            expression names something; None without target logits) and `target_present` (False when the
            target was judged absent, or the mask is empty).
        """
        if not isinstance(logits, torch.Tensor):
            raise ValueError(f"logits must be a torch.Tensor, got {_describe(logits)}")
        if logits.ndim == 3:
            logits = logits[:, None]
        if logits.ndim != 4 or logits.shape[1] != 1 or 0 in logits.shape:
            raise ValueError(f"logits must have shape (B, 1, h, w) or (B, h, w), got {tuple(logits.shape)}")
        try:
            sizes = torch.as_tensor(original_sizes)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"original_sizes must be (B, 2) as (height, width), got {original_sizes!r}") from err
        if sizes.ndim != 2 or sizes.shape[1] != 2:
            raise ValueError(f"original_sizes must have shape (B, 2) as (height, width), got {tuple(sizes.shape)}")
        sizes = sizes.tolist()
        if len(sizes) != logits.shape[0]:
            raise ValueError(f"got {logits.shape[0]} logit maps but {len(sizes)} original sizes")
        for i, hw in enumerate(sizes):
            if any(not float(v).is_integer() or v < 1 for v in hw):
                raise ValueError(f"original_sizes[{i}] must be (height, width) positive integers, got {hw!r}")
        scores = None
        if target_logits is not None:
            target_logits = torch.as_tensor(target_logits).float().reshape(-1)
            if target_logits.shape[0] != logits.shape[0]:
                raise ValueError(f"got {logits.shape[0]} logit maps but {target_logits.shape[0]} target logits")
            scores = target_logits.sigmoid().tolist()
        side = self.image_size
        probabilities = logits.float().sigmoid()
        if probabilities.shape[-2:] != (side, side):
            probabilities = F.interpolate(probabilities, size=(side, side), mode="bilinear", align_corners=False)
        results = []
        for i, (height, width) in enumerate(sizes):
            height, width = int(height), int(width)
            resized_height, resized_width, top, left = letterbox_geometry(height, width, side)
            crop = probabilities[i : i + 1, :, top : top + resized_height, left : left + resized_width]
            restored = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            absent = scores is not None and scores[i] < no_target_threshold
            if absent:
                restored = torch.zeros_like(restored)
            mask = restored if threshold is None else restored > threshold
            if not return_scores:
                results.append(mask)
                continue
            present = not absent and bool((mask > 0).any())
            results.append({"mask": mask, "score": None if scores is None else scores[i], "target_present": present})
        return results


ASDAImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["ASDAImageProcessor"]
