# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""`pipeline("referring-image-segmentation")`: masks for (image, expression) pairs from an ASDA checkpoint.

    from transformers import pipeline
    segment = pipeline("referring-image-segmentation", model="path/or/repo", trust_remote_code=True)
    result = segment("street.jpg", text="the man on the left")
    result["mask"].save("mask.png")  # PIL "L" image, 0/255, at the image's original size

This file is Hub-facing: it travels inside checkpoints and imports nothing from the asda package, so a
checkpoint folder works for users who never installed it. `ASDAForReferringSegmentation.save_pretrained`
copies it next to the weights and names it under `custom_pipelines` in `config.json`, which is how
`pipeline(...)` finds it without a local registration.
"""

import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "referring-image-segmentation"
MASK_FORMATS = ("pil", "numpy")


def _is_pair(item) -> bool:
    return isinstance(item, dict) and "image" in item and "text" in item


def open_image(source: str) -> Image.Image:
    """A local path or http(s) URL -> the image as stored, upright by its EXIF orientation.

    The mode is kept (16-bit, palette, alpha): the processor reads every mode, and the same image gives the
    same mask whether it is passed as a path or as an opened PIL image. (transformers' load_image converts
    to 8-bit RGB, which clips 16-bit images to white.)
    """
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                stream = io.BytesIO(response.read())
        except Exception as err:  # URLError, timeouts, HTTP errors: all mean the same to the caller
            raise ValueError(f"could not fetch the image {source}: {err}") from err
    elif not os.path.isfile(source):
        raise FileNotFoundError(f"no image file {source}")
    else:
        stream = source
    try:
        image = Image.open(stream)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"could not read the image {source} ({type(err).__name__}: {err})") from err
    return ImageOps.exif_transpose(image)


class ReferringSegmentationPipeline(Pipeline):
    r"""
    Referring image segmentation: the mask of the object an expression names.

    Inputs (each image is a PIL image, a numpy array, a torch tensor, or a local path / URL):

    - `pipe(image, text="the red circle")` -> one result;
    - `pipe(image, text=["the red circle", "the star"])` -> one result per expression;
    - `pipe([image_a, image_b], text=["expr a", "expr b"])` -> one result per (image, expression), in order;
    - `pipe({"image": image, "text": "..."})` -> one result; a list of such dicts -> a list;
    - a generator or `datasets.Dataset` of such dicts -> an iterator of results (streams; nothing is held).

    Call arguments (also accepted by `pipeline(...)` as defaults):

    - `batch_size` (`int`): pairs per forward pass;
    - `threshold` (`float`): probability above which a pixel is foreground; defaults to the checkpoint's
      `config.mask_threshold` (0.35, the published evaluation);
    - `mask_format` (`"pil"` or `"numpy"`): `"pil"` (default) gives a mode "L" image with 0/255, the
      format of transformers' image-segmentation pipeline; `"numpy"` gives a bool array (height, width);
    - `bf16` (`bool`): run the model under `torch.autocast(dtype=torch.bfloat16)`.

    Each result is a dict:

    - `mask`: the predicted mask at the ORIGINAL image size (see `mask_format`); empty when the expression
      names nothing, one mask covering all of them when it names several;
    - `score` (`float`): with a no-target head (`config.no_target_head`), the probability that the expression
      names something in the image; without one, the mean predicted probability inside the mask (0.0 for an
      empty mask);
    - `target_present` (`bool`): False when the head judged the target absent or the mask is empty;
    - `text` (`str`): the expression;
    - `low_layer`, `mid_layer` (`int` or `None`): the 1-based ViT layers the adaptive selection chose for
      this expression (`None` when the checkpoint uses no feature selection).
    """

    _load_processor = True
    _load_image_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "ReferringSegmentationPipeline needs the ASDA processor: pass processor=..., or save it next to the "
                "weights with processor.save_pretrained(folder)"
            )
        self.model.eval()

    # ------------------------------------------------------------------------------------------ inputs
    def _sanitize_parameters(self, threshold=None, mask_format=None, bf16=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        forward, postprocess = {}, {}
        if bf16 is not None:
            forward["bf16"] = bool(bf16)
        if threshold is not None:
            if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
                raise ValueError(f"threshold must be a probability in [0, 1), got {threshold!r}")
            postprocess["threshold"] = float(threshold)
        if mask_format is not None:
            if mask_format not in MASK_FORMATS:
                raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
            postprocess["mask_format"] = mask_format
        return {}, forward, postprocess

    def __call__(self, inputs, text=None, **kwargs):
        pairs, single = self._as_pairs(inputs, text)
        results = super().__call__(pairs, **kwargs)
        return results[0] if single else results

    @staticmethod
    def _as_pairs(inputs, text):
        """Normalise every accepted input form to a list (or stream) of {"image", "text"} dicts."""
        if text is None:
            if _is_pair(inputs):
                return [inputs], True
            if isinstance(inputs, (list, tuple)):
                bad = [i for i, item in enumerate(inputs) if not _is_pair(item)]
                if bad or not inputs:
                    raise ValueError(
                        "without text=..., inputs must be {'image': ..., 'text': ...} dicts"
                        + (f"; items {bad[:5]} are not" if bad else " (got an empty list)")
                    )
                return list(inputs), False
            if hasattr(inputs, "__iter__") and not isinstance(
                inputs, (str, bytes, os.PathLike, Image.Image, np.ndarray, torch.Tensor)
            ):
                return inputs, False  # a generator or Dataset of dicts, streamed; preprocess checks each item
            raise ValueError("pass the expression: pipe(image, text='...') or pipe({'image': image, 'text': '...'})")
        if _is_pair(inputs):
            raise ValueError("inputs is already an {'image', 'text'} dict; do not pass text=... as well")
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"text must be a string or a non-empty list of strings, got {text!r}")
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError("no images were given (an empty list); pass an image or a list of images")
            if isinstance(text, str):
                texts = texts * len(inputs)
            if len(texts) != len(inputs):
                raise ValueError(
                    f"got {len(inputs)} images and {len(texts)} texts; pass one text per image (or one for all)"
                )
            return [{"image": image, "text": t} for image, t in zip(inputs, texts)], False
        return [{"image": inputs, "text": t} for t in texts], isinstance(text, str)

    def preprocess(self, pair):
        if not _is_pair(pair):
            raise ValueError(f"each input must be an {{'image': ..., 'text': ...}} dict, got {type(pair).__name__}")
        image = pair["image"]
        if isinstance(image, (str, os.PathLike)):
            image = open_image(os.fspath(image))
        inputs = self.processor(images=image, text=pair["text"], return_tensors="pt")
        return {
            "pixel_values": inputs["pixel_values"],
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "original_sizes": inputs["original_sizes"],
            "text": pair["text"],
        }

    # ----------------------------------------------------------------------------------------- forward
    def _forward(self, model_inputs, bf16=False):
        pixel_values = model_inputs["pixel_values"].to(self.model.dtype)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = self.model(
                pixel_values=pixel_values,
                input_ids=model_inputs["input_ids"],
                attention_mask=model_inputs["attention_mask"],
            )
        # "logits" first: the batch unroller reads the batch size from the first entry.
        target_logits = getattr(outputs, "target_logits", None)
        return {
            "logits": outputs.logits.float(),
            "target_logits": None if target_logits is None else target_logits.float(),
            "low_layer_index": outputs.low_layer_index,
            "mid_layer_index": outputs.mid_layer_index,
            "original_sizes": model_inputs["original_sizes"],
            "text": model_inputs["text"],
        }

    def postprocess(self, model_outputs, threshold=None, mask_format="pil"):
        threshold = self.model.config.mask_threshold if threshold is None else threshold
        # The processor's own mapping back to the original size; thresholding its probabilities here is
        # exactly what post_process_masks(threshold=...) does, and the probabilities give the score.
        result = self.processor.post_process_masks(
            model_outputs["logits"],
            model_outputs["original_sizes"],
            threshold=None,
            target_logits=model_outputs.get("target_logits"),
            no_target_threshold=getattr(self.model.config, "no_target_threshold", 0.5),
            return_scores=True,
        )[0]
        probabilities = result["mask"]
        mask = probabilities > threshold
        if result["score"] is not None:
            score = float(result["score"])
        else:
            score = float(probabilities[mask].mean()) if bool(mask.any()) else 0.0
        target_present = bool(result["target_present"]) and bool(mask.any())
        mask = mask.numpy()
        if mask_format == "pil":
            mask = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        text = model_outputs["text"]
        return {
            "mask": mask,
            "score": score,
            "target_present": target_present,
            "text": text[0] if isinstance(text, (list, tuple)) else text,
            "low_layer": _layer(model_outputs["low_layer_index"]),
            "mid_layer": _layer(model_outputs["mid_layer_index"]),
        }

    # -------------------------------------------------------------------------------------------- save
    def save_pretrained(self, save_directory, **kwargs):
        """Weights, code, processor and this pipeline: `pipeline(TASK, model=save_directory, trust_remote_code=True)` works."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)  # the base class saves sub-processors only


def _layer(index):
    if index is None:
        return None
    return int(torch.as_tensor(index).reshape(-1)[0])


def pipeline_config_entry() -> dict:
    """The config's `custom_pipelines` entry, as `Pipeline.save_pretrained` writes it."""
    impl = PIPELINE_REGISTRY.supported_tasks[TASK]
    return {
        TASK: {
            "impl": f"{Path(__file__).stem}.{ReferringSegmentationPipeline.__name__}",
            "pt": tuple(cls.__name__ for cls in impl["pt"]),
            "type": impl.get("type", "multimodal"),
        }
    }


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=ReferringSegmentationPipeline, pt_model=AutoModel, type="multimodal"
)

__all__ = ["ReferringSegmentationPipeline", "TASK", "pipeline_config_entry"]
