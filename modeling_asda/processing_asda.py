# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Processor for ASDA: the letterbox image processor plus CLIP's BPE tokenizer at a fixed length.

Text follows OpenAI's CLIP tokenizer and the published ASDA code (`clip.tokenize(phrase, 17, truncate=True)`):

* normalise: `ftfy.fix_text` (when installed), `html.unescape` twice, strip, collapse whitespace, lowercase;
* ids: `[SOT] + BPE + [EOT]`, exactly `max_length` long; too long expressions lose the tail of their BPE
  tokens so that EOT stays last (a warning says how many were dropped); padding is id 0;
* `attention_mask` is 1 on SOT..EOT by position (the published `word_id != 0` also masked the token "!",
  whose id is 0).
"""

import html
import re
from pathlib import Path

import torch
from transformers import CLIPTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .image_processing_asda import PER_CALL_SETTINGS, ASDAImageProcessor

try:  # optional: without it, mojibake and odd unicode forms tokenize differently from OpenAI's CLIP
    import ftfy
except ImportError:
    ftfy = None

logger = logging.get_logger(__name__)

BUNDLED_TOKENIZER_DIR = Path(__file__).resolve().parent / "clip_tokenizer"
PAD_TOKEN_ID = 0  # what the published code pads with; the attention mask marks it


def normalize_expression(text: str) -> str:
    """OpenAI CLIP's text cleaning: fix_text, double HTML unescape, whitespace collapse, lowercase."""
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def load_bundled_tokenizer() -> CLIPTokenizer:
    """CLIP's BPE tokenizer from the vocabulary shipped in the package (no network)."""
    vocab, merges = BUNDLED_TOKENIZER_DIR / "vocab.json", BUNDLED_TOKENIZER_DIR / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise OSError(
            f"The bundled CLIP vocabulary is missing ({BUNDLED_TOKENIZER_DIR}); install the asda package, or load "
            "a saved processor with AutoProcessor.from_pretrained(..., trust_remote_code=True)"
        )
    # Positional: transformers 5 silently ignores vocab_file=/merges_file= and builds a 3-token vocabulary.
    tokenizer = CLIPTokenizer(str(vocab), str(merges))
    # ASDA pads with id 0 ("!"), like the published code; saying so keeps Trainer from re-aligning the
    # model config's pad id to <|endoftext|>.
    tokenizer.pad_token = "!"
    return tokenizer


def _as_text_list(text) -> list[str]:
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, (list, tuple)):
        raise ValueError(f"text must be a string or a list of strings, got {type(text).__name__}")
    if len(texts) == 0:
        raise ValueError("no text was given (empty list)")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise ValueError(f"text {i} is a {type(item).__name__}, expected a string")
    return list(texts)


class ASDAProcessor(ProcessorMixin):
    r"""
    Builds ASDA's inputs from images and referring expressions.

    Args:
        image_processor ([`ASDAImageProcessor`], *optional*): defaults to one with `image_size`.
        tokenizer ([`CLIPTokenizer`], *optional*): defaults to CLIP's BPE vocabulary shipped in the package.
        max_length (`int`, *optional*, defaults to 17): token length L of every expression, SOT and EOT included.
        image_size (`int`, *optional*): side of the letterboxed input when `image_processor` is not given
            (416 by default); must agree with `image_processor.image_size` when both are given.

    `ASDAProcessor()` works offline. Match a model with `ASDAProcessor(image_size=config.image_size,
    max_length=config.max_text_length)` or [`~ASDAProcessor.from_model_config`].
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(
        self, image_processor=None, tokenizer=None, max_length: int = 17, image_size: int | None = None, **kwargs
    ):
        if image_processor is None:
            image_processor = ASDAImageProcessor(image_size=416 if image_size is None else image_size)
        elif image_size is not None and image_size != image_processor.image_size:
            raise ValueError(
                f"image_size={image_size} disagrees with image_processor.image_size={image_processor.image_size}"
            )
        if tokenizer is None:
            tokenizer = load_bundled_tokenizer()
        if not isinstance(max_length, int) or max_length < 3:
            raise ValueError(f"max_length must be an int >= 3 (SOT, one token, EOT), got {max_length!r}")
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # Load the sub-processors with our own classes. The default resolves them through
        # AutoImageProcessor, which demands trust_remote_code even when this class is already loaded
        # (in-process, or as the remote-code copy next to the checkpoint).
        hub_keys = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
        hub_kwargs = {key: kwargs[key] for key in hub_keys if key in kwargs}
        image_processor = ASDAImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        return [image_processor, tokenizer]

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "ASDAProcessor":
        """A processor whose image size and text length match an `ASDAConfig`."""
        return cls(image_size=config.image_size, max_length=config.max_text_length, **kwargs)

    def __call__(
        self, images=None, text=None, masks=None, return_tensors="pt", max_length: int | None = None, **kwargs
    ):
        """
        Args:
            images: one image or a list (PIL in any mode, numpy, torch; see [`ASDAImageProcessor`]).
            text (`str` or `list[str]`): one referring expression per image.
            masks (*optional*): one mask per image, returned letterboxed as `labels`.
            return_tensors (`str`, defaults to `"pt"`): `"pt"` or `"np"`.
            max_length (`int`, *optional*): overrides the processor's token length for this call.
            image_size, image_mean, image_std, pad_value (*optional*): override the image processor's settings
                for this call.

        Returns:
            [`BatchFeature`] with `pixel_values` (B, 3, S, S), `original_sizes` (B, 2) as (height, width),
            `input_ids` and `attention_mask` (B, L) int64, and `labels` (B, S, S) when masks are given.
        """
        image_settings = {name: kwargs.pop(name) for name in PER_CALL_SETTINGS if name in kwargs}
        if kwargs:
            raise TypeError(f"ASDAProcessor got unexpected arguments: {sorted(kwargs)}")
        if images is None and text is None:
            raise ValueError("pass images=..., text=... or both")
        if masks is not None and images is None:
            raise ValueError("masks need their images: pass images=... as well")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        texts = None if text is None else _as_text_list(text)

        data = {}
        if images is not None:
            data.update(self.image_processor(images, masks=masks, return_tensors="pt", **image_settings))
            if texts is not None and len(texts) != len(data["pixel_values"]):
                raise ValueError(
                    f"got {len(data['pixel_values'])} images and {len(texts)} texts; ASDA takes one expression per "
                    "image, so repeat an image once for each of its expressions (or an expression for each image)"
                )
        if texts is not None:
            data.update(self.encode_text(texts, max_length=max_length))
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        return BatchFeature(data=data)

    def encode_text(self, text, max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Normalised CLIP BPE ids at a fixed length: `input_ids` and `attention_mask`, both (B, L) int64."""
        length = self.max_length if max_length is None else max_length
        if not isinstance(length, int) or length < 3:
            raise ValueError(f"max_length must be an int >= 3 (SOT, one token, EOT), got {length!r}")
        texts = [normalize_expression(t) for t in _as_text_list(text)]
        for i, cleaned in enumerate(texts):
            if not cleaned:
                raise ValueError(f"text {i} is empty or only whitespace after normalisation")
        bpe = self.tokenizer(texts, add_special_tokens=False)["input_ids"]

        input_ids = torch.full((len(texts), length), PAD_TOKEN_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), length), dtype=torch.long)
        truncated = []
        for i, ids in enumerate(bpe):
            keep = ids[: length - 2]
            if len(ids) > len(keep):
                truncated.append(f"text {i} lost {len(ids) - len(keep)} of {len(ids)} tokens")
            row = [self.tokenizer.bos_token_id, *keep, self.tokenizer.eos_token_id]
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        if truncated:
            logger.warning(
                f"Truncated {len(truncated)} of {len(texts)} expressions to max_length={length} "
                f"({length - 2} BPE tokens + SOT/EOT): " + "; ".join(truncated)
            )
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def post_process_masks(
        self,
        logits,
        original_sizes,
        threshold: float | None,
        target_logits=None,
        no_target_threshold: float = 0.5,
        return_scores: bool = False,
    ):
        """See [`ASDAImageProcessor.post_process_masks`]."""
        return self.image_processor.post_process_masks(
            logits,
            original_sizes,
            threshold=threshold,
            target_logits=target_logits,
            no_target_threshold=no_target_threshold,
            return_scores=return_scores,
        )

    def batch_decode(self, input_ids, **kwargs) -> list[str]:
        """Decode fixed-length ids: the tokens between SOT and the first EOT (padding is id 0, the token "!")."""
        rows = []
        for ids in torch.as_tensor(input_ids).tolist():
            start = 1 if ids and ids[0] == self.tokenizer.bos_token_id else 0
            end = ids.index(self.tokenizer.eos_token_id) if self.tokenizer.eos_token_id in ids else len(ids)
            rows.append(ids[start:end])
        return self.tokenizer.batch_decode(rows, **kwargs)

    @property
    def model_input_names(self):
        return ["pixel_values", "input_ids", "attention_mask"]


ASDAProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["ASDAProcessor"]
