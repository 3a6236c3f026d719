# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""ASDA model configuration.

Holds a CLIP text and vision config plus every hyperparameter of the ASDA heads,
so that every ablation of the paper (Tables 2-5) is a configuration, not a code change.
"""

from transformers import CLIPTextConfig, CLIPVisionConfig, PretrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

_CHOICES = {
    "feature_selection": ("adaptive", "manual", "none"),
    "selection": ("straight_through", "hard", "soft"),
    "selector": ("linear", "mlp", "conv", "shared_linear"),
    "selection_text_feature": ("final", "same_layer"),
    "fusion": ("sfa", "concat"),
    "sfa_scales": ("pyramid", "grid"),
    "aligner": ("dual", "single", "none"),
    "response_activation": ("relu", "sigmoid"),
    "coefficient_pooling": ("flatten", "mean"),
}


def _clip_text_config(**sizes) -> CLIPTextConfig:
    """A CLIP text encoder of the given sizes with CLIP's BPE vocabulary, special ids, 77 positions and quick GELU."""
    return CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0,
        **sizes,
    )


def _clip_vision_config(**sizes) -> CLIPVisionConfig:
    """A CLIP ViT of the given sizes with 16x16 patches and quick GELU."""
    return CLIPVisionConfig(patch_size=16, hidden_act="quick_gelu", **sizes)


class ASDAConfig(PretrainedConfig):
    r"""
    Configuration of [`ASDAForReferringSegmentation`].

    Args:
        text_config (`dict` or `CLIPTextConfig`, *optional*):
            The CLIP text encoder. `eos_token_id` must be the tokenizer's end-of-text id (49407 for CLIP BPE).
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP vision encoder. Its `image_size` is forced to `image_size`, so the position table has
            one row per patch of the ASDA input grid (resized once when loading CLIP weights).
        projection_dim (`int`, defaults to 512):
            Joint vision-language width C (CLIP's projection width); all ASDA heads work at this width.
        image_size (`int`, defaults to 416): letterboxed input side.
        max_text_length (`int`, defaults to 17): tokens per expression incl. SOT/EOT (22 for G-Ref).
        low_candidate_layers, mid_candidate_layers (`tuple[int]`, defaults to (4, 5, 6) and (7, 8, 9)):
            1-based vision layers the adaptive selection chooses from (paper eq. 1-3).
        manual_layers (`tuple[int, int]`, *optional*):
            Low and mid layer for `feature_selection="manual"` (Table 2 row b). Defaults to the last layer
            of each candidate set, i.e. (6, 9) for ViT-B/16.
        feature_selection (`str`, defaults to `"adaptive"`): `"adaptive"` (AFS), `"manual"` or `"none"` (F_H only).
        selection (`str`, defaults to `"straight_through"`):
            How the argmax is taken. `"hard"` is the published code: argmax only, so the selector never
            receives a gradient. `"straight_through"` is hard one-hot forward with the softmax gradient
            backward (the default: the selector trains). `"soft"` mixes layers by their probabilities.
        selector (`str`, defaults to `"linear"`):
            The selection network Φ_as (Table 5): `"linear"` over the concatenated scores, `"mlp"`, `"conv"`, or
            `"shared_linear"`, the published code's one C->1 linear applied to each candidate's score.
        selection_text_feature (`str`, defaults to `"final"`):
            The text side of eq. 1. `"final"`: the sentence feature f_E (the paper's text). `"same_layer"`: the EOT
            token of the text encoder's layer l (before the final LayerNorm, no projection) scores vision layer l,
            and Φ_T has no bias, as in the published code; needs a text encoder at least as deep as the candidates.
        selector_hidden_dim (`int`, defaults to 256): hidden width of the mlp/conv selectors.
        fusion (`str`, defaults to `"sfa"`): `"sfa"` scale-wise aggregator (eq. 4-5) or `"concat"` (CRIS-style).
        sfa_scales (`str`, defaults to `"pyramid"`):
            `"pyramid"`: the published code's SFA (mid layer up-sampled 2x, low layer 4x, max-pooled back to
            the grid; ~45% of the FLOPs of `vit_b16` at 416²). `"grid"`: the paper text's SFA, the levels at
            the grid's own scales (grid, 1/2, 1/4) with narrow laterals; a small fraction of those FLOPs.
        sfa_hidden_dim (`int`, *optional*):
            Width of the SFA pyramid and laterals. Defaults to `projection_dim` for `"pyramid"` as in the
            published code, and to 32 for `"grid"` as the paper's text ("boldly reduce the channel dimension
            to 32").
        aligner (`str`, defaults to `"dual"`): `"dual"` (WGDA, eq. 6-10), `"single"` (Table 2 row e) or `"none"`.
        num_local_attention_layers (`int`, defaults to 2): n of Table 3.
        num_attention_heads (`int`, defaults to 8): heads of the local self- and cross-attention.
        local_attention_mlp_dim (`int`, defaults to 512): MLP width of the local self-attention layers.
        cross_attention_mlp_dim (`int`, defaults to 2048): MLP width of the word cross-attention layer.
        attention_dropout, hidden_dropout (`float`, defaults to 0.0 and 0.1): published code: 0.1 and 0.1.
        batch_norm_momentum (`float`, defaults to 0.1):
            Momentum of the heads' BatchNorm running statistics (PyTorch convention: weight of the new batch). The
            published code uses 0.999, i.e. the running statistics are essentially those of the last batch.
        relu_coarse_features (`bool`, defaults to `False`):
            Apply ReLU to F_coarse before the aligner, as the published code does.
        normalize_local_positions (`bool`, defaults to `True`):
            Sine positions of the local attention over coordinates scaled to (0, 2π] (DETR); `False` uses the
            integer grid coordinates, as the published code's visual branch does.
        mask_padding_words (`bool`, defaults to `True`):
            Mask padding tokens in the word cross-attention. The published code attends to them.
        decoder_hidden_dim (`int`, defaults to 256): width of the segmentation decoder (published: C/2).
        decoder_upsampling (`int`, defaults to 8):
            How far the decoder upsamples the ViT grid (a power of 2, one 2x upsample + 3x3 conv stage per
            factor 2): the mask logits are `grid * decoder_upsampling` pixels wide. 8 as published (208 for
            416 / 16); `image_size / grid` gives logits at the input resolution.
        num_response_masks (`int`, defaults to 32): N_c of Table 4.
        response_activation (`str`, defaults to `"relu"`):
            Activation of the response masks M'. The published code (which produced the paper's numbers)
            uses ReLU; the paper's text says sigmoid.
        coefficient_pooling (`str`, defaults to `"flatten"`):
            How Φ_coef's N_c maps become one coefficient vector: `"flatten"` + Linear as published (ties the
            head to one grid size) or `"mean"` pooling (any size).
        focal_weight, dice_weight (`float`, default 1.0): loss weights.
        focal_alpha (`float`, defaults to -1.0): focal α; negative disables α-balancing (published code).
        focal_gamma (`float`, defaults to 0.0): focal γ; with α<0 and γ=0 the focal term is plain BCE, as published.
        lovasz_weight (`float`, defaults to 0.0):
            Weight of a Lovász hinge term (a convex surrogate of 1 - IoU per mask, Berman et al. 2018) added to
            the loss; it weighs the boundary errors that decide high IoU. 0 = the published loss.
        mask_refiner_dim (`int`, defaults to 0):
            Width of an optional mask refiner (`modeling_refiner.py`): a small CNN on the image's pixels that turns the
            decoder's logits into logits at the input resolution with sharper edges. It reads the decoder's logits
            detached and has its own loss term, so the rest of the model trains exactly as without it. 0 = off
            (the paper's model).
        mask_threshold (`float`, defaults to 0.35): probability threshold of the published evaluation.
        no_target_head (`bool`, defaults to `False`):
            Add a head that scores whether the expression names anything (`ASDAOutput.target_logits`), for
            data where an expression may have no target (gRefCOCO). Off: the model is exactly the paper's.
        no_target_threshold (`float`, defaults to 0.5):
            A sample whose target probability (sigmoid of its target logit) is below this gets an empty mask.
        no_target_loss_weight (`float`, defaults to 1.0): weight of the head's BCE next to the mask loss.
        initializer_range (`float`, defaults to 0.02): std of the heads' linear/conv initialisation.
        vision_position_init_scale (`float`, defaults to 0.0):
            Initialisation of the ViT position table when the model is built without weights. 0 keeps
            CLIP's (random, std 0.02); a positive value uses a 2-D sine-cosine table over the patch grid
            times this value. Trained from scratch, the random table leaves "left"/"top" and relations
            unlearnable for thousands of steps; loading CLIP or ASDA weights overwrites the table either way.
    """

    model_type = "asda"
    sub_configs = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        model_type = config_dict.get("model_type")
        if model_type not in (None, cls.model_type):
            # transformers only warns and then builds a randomly initialised ASDA from a foreign config.
            raise ValueError(
                f"{pretrained_model_name_or_path}: its config.json is for a '{model_type}' model, not ASDA "
                f"(model_type '{cls.model_type}'). Pass an ASDA checkpoint: a folder written by run_ris.py or "
                "save_pretrained, or its Hub id."
            )
        return config_dict, kwargs

    def __init__(
        self,
        text_config=None,
        vision_config=None,
        projection_dim=512,
        image_size=416,
        max_text_length=17,
        low_candidate_layers=(4, 5, 6),
        mid_candidate_layers=(7, 8, 9),
        manual_layers=None,
        feature_selection="adaptive",
        selection="straight_through",
        selector="linear",
        selector_hidden_dim=256,
        selection_text_feature="final",
        fusion="sfa",
        sfa_scales="pyramid",
        sfa_hidden_dim=None,
        aligner="dual",
        num_local_attention_layers=2,
        num_attention_heads=8,
        local_attention_mlp_dim=512,
        cross_attention_mlp_dim=2048,
        attention_dropout=0.0,
        hidden_dropout=0.1,
        batch_norm_momentum=0.1,
        relu_coarse_features=False,
        normalize_local_positions=True,
        mask_padding_words=True,
        decoder_hidden_dim=256,
        decoder_upsampling=8,
        num_response_masks=32,
        response_activation="relu",
        coefficient_pooling="flatten",
        focal_weight=1.0,
        dice_weight=1.0,
        focal_alpha=-1.0,
        focal_gamma=0.0,
        lovasz_weight=0.0,
        mask_refiner_dim=0,
        mask_threshold=0.35,
        no_target_head=False,
        no_target_threshold=0.5,
        no_target_loss_weight=1.0,
        initializer_range=0.02,
        vision_position_init_scale=0.0,
        **kwargs,
    ):
        if text_config is None:
            text_config = CLIPTextConfig(eos_token_id=49407, bos_token_id=49406, pad_token_id=0)
        elif isinstance(text_config, dict):
            text_config = CLIPTextConfig(**text_config)
        if vision_config is None:
            vision_config = CLIPVisionConfig(patch_size=16)
        elif isinstance(vision_config, dict):
            vision_config = CLIPVisionConfig(**vision_config)
        # The position table is sized for the ASDA grid; keeping one source of truth avoids a silent mismatch.
        vision_config.image_size = image_size
        self.text_config = text_config
        self.vision_config = vision_config

        self.projection_dim = projection_dim
        self.image_size = image_size
        self.max_text_length = max_text_length
        self.low_candidate_layers = tuple(low_candidate_layers)
        self.mid_candidate_layers = tuple(mid_candidate_layers)
        if manual_layers is None:
            manual_layers = (self.low_candidate_layers[-1], self.mid_candidate_layers[-1])
        self.manual_layers = tuple(manual_layers)
        self.feature_selection = feature_selection
        self.selection = selection
        self.selector = selector
        self.selector_hidden_dim = selector_hidden_dim
        self.selection_text_feature = selection_text_feature
        self.fusion = fusion
        self.sfa_scales = sfa_scales
        if sfa_hidden_dim is None:
            sfa_hidden_dim = 32 if sfa_scales == "grid" else projection_dim
        self.sfa_hidden_dim = sfa_hidden_dim
        self.aligner = aligner
        self.num_local_attention_layers = num_local_attention_layers
        self.num_attention_heads = num_attention_heads
        self.local_attention_mlp_dim = local_attention_mlp_dim
        self.cross_attention_mlp_dim = cross_attention_mlp_dim
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.batch_norm_momentum = batch_norm_momentum
        self.relu_coarse_features = relu_coarse_features
        self.normalize_local_positions = normalize_local_positions
        self.mask_padding_words = mask_padding_words
        self.decoder_hidden_dim = decoder_hidden_dim
        self.decoder_upsampling = int(decoder_upsampling)
        self.num_response_masks = num_response_masks
        self.response_activation = response_activation
        self.coefficient_pooling = coefficient_pooling
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.lovasz_weight = float(lovasz_weight)
        self.mask_refiner_dim = int(mask_refiner_dim)
        self.mask_threshold = mask_threshold
        self.no_target_head = bool(no_target_head)
        self.no_target_threshold = float(no_target_threshold)
        self.no_target_loss_weight = float(no_target_loss_weight)
        self.initializer_range = initializer_range
        self.vision_position_init_scale = float(vision_position_init_scale)
        super().__init__(**kwargs)
        self._validate()

    @property
    def grid_size(self) -> int:
        """Side of the vision token grid (26 for 416 / 16)."""
        return self.image_size // self.vision_config.patch_size

    @property
    def decoder_mask_size(self) -> int:
        """Side of the decoder's logits: the grid times `decoder_upsampling` (208 for 416 / 16 and 8x)."""
        return self.grid_size * self.decoder_upsampling

    @property
    def mask_size(self) -> int:
        """Side of the predicted mask logits: the decoder's, or the input size with the mask refiner."""
        return self.image_size if self.mask_refiner_dim else self.decoder_mask_size

    def _validate(self):
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"ASDAConfig.{name}={value!r} is not one of {choices}.")
        patch = self.vision_config.patch_size
        if self.image_size % patch != 0:
            raise ValueError(f"ASDAConfig.image_size={self.image_size} must be a multiple of the patch size {patch}.")
        num_layers = self.vision_config.num_hidden_layers
        for name in ("low_candidate_layers", "mid_candidate_layers", "manual_layers"):
            layers = getattr(self, name)
            if not layers or any(not 1 <= int(layer) <= num_layers for layer in layers):
                raise ValueError(
                    f"ASDAConfig.{name}={layers} must be non-empty 1-based layer indices within the vision "
                    f"encoder's {num_layers} layers."
                )
        if len(self.manual_layers) != 2:
            raise ValueError(f"ASDAConfig.manual_layers={self.manual_layers} must name one low and one mid layer.")
        max_positions = self.text_config.max_position_embeddings
        if not 2 <= self.max_text_length <= max_positions:
            raise ValueError(
                f"ASDAConfig.max_text_length={self.max_text_length} must be in [2, {max_positions}] "
                "(SOT + EOT, and the text encoder's position table)."
            )
        if self.projection_dim % self.num_attention_heads != 0:
            raise ValueError(
                f"ASDAConfig.projection_dim={self.projection_dim} must be divisible by num_attention_heads="
                f"{self.num_attention_heads}."
            )
        if self.num_local_attention_layers < 0 or self.num_response_masks < 1:
            raise ValueError("ASDAConfig.num_local_attention_layers must be >= 0 and num_response_masks >= 1.")
        upsampling = self.decoder_upsampling
        if upsampling < 1 or upsampling & (upsampling - 1):
            raise ValueError(f"ASDAConfig.decoder_upsampling={upsampling} must be a power of 2 (1, 2, 4, 8, 16, ...).")
        if self.mask_refiner_dim < 0:
            raise ValueError(f"ASDAConfig.mask_refiner_dim={self.mask_refiner_dim} must be >= 0 (0 = no refiner).")
        if self.mask_refiner_dim and self.image_size % self.decoder_mask_size != 0:
            raise ValueError(
                f"ASDAConfig.mask_refiner_dim needs the input size ({self.image_size}) to be a multiple of the "
                f"decoder's mask size ({self.decoder_mask_size})."
            )
        if not self.lovasz_weight >= 0:  # also catches NaN
            raise ValueError(f"ASDAConfig.lovasz_weight={self.lovasz_weight} must be >= 0.")
        if not 0 < self.no_target_threshold < 1 or not self.no_target_loss_weight >= 0:
            raise ValueError(
                f"ASDAConfig.no_target_threshold={self.no_target_threshold} must be in (0, 1) and "
                f"no_target_loss_weight={self.no_target_loss_weight} >= 0."
            )
        if self.selection_text_feature == "same_layer" and self.feature_selection == "adaptive":
            deepest = max(self.low_candidate_layers + self.mid_candidate_layers)
            if self.text_config.num_hidden_layers < deepest:
                raise ValueError(
                    f"ASDAConfig.selection_text_feature='same_layer' scores vision layer l with text layer l, but the "
                    f"text encoder has {self.text_config.num_hidden_layers} layers and the candidates reach {deepest}."
                )
        if not 0.0 < self.batch_norm_momentum <= 1.0:
            raise ValueError(f"ASDAConfig.batch_norm_momentum={self.batch_norm_momentum} must be in (0, 1].")
        if not self.vision_position_init_scale >= 0:  # also catches NaN
            raise ValueError(f"ASDAConfig.vision_position_init_scale={self.vision_position_init_scale} must be >= 0.")
        if self.vision_position_init_scale > 0 and self.vision_config.hidden_size % 4 != 0:
            raise ValueError(
                f"ASDAConfig.vision_position_init_scale > 0 needs a vision width divisible by 4 (2-D sine-cosine "
                f"table); vision_config.hidden_size is {self.vision_config.hidden_size}."
            )

    @classmethod
    def vit_b16(cls, **kwargs) -> "ASDAConfig":
        """The paper's model: openai/clip-vit-base-patch16 dimensions, 416x416 input, paper settings."""
        text = _clip_text_config(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = _clip_vision_config(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
        )
        defaults = dict(text_config=text, vision_config=vision, projection_dim=512, image_size=416, max_text_length=17)
        defaults.update(kwargs)
        return cls(**defaults)

    @classmethod
    def tiny(cls, **kwargs) -> "ASDAConfig":
        """A small model that trains on 2 CPU cores in minutes; 8 vision layers keep 3 low + 3 mid candidates."""
        text = _clip_text_config(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4)
        vision = _clip_vision_config(hidden_size=96, intermediate_size=192, num_hidden_layers=8, num_attention_heads=4)
        defaults = dict(
            text_config=text,
            vision_config=vision,
            projection_dim=64,
            image_size=128,
            max_text_length=17,
            low_candidate_layers=(2, 3, 4),
            mid_candidate_layers=(5, 6, 7),
            selector_hidden_dim=32,
            num_attention_heads=4,
            local_attention_mlp_dim=128,
            cross_attention_mlp_dim=128,
            decoder_hidden_dim=32,
            num_response_masks=16,
            coefficient_pooling="mean",
            # Sharp logits at the input resolution from the pixels (the demo run: +8.7 test mIoU, Prec@0.9 5.6% ->
            # 39.3%; docs/experiments.md); the paper's model has none.
            mask_refiner_dim=16,
            # Trained from scratch, a sine-cosine position table lets position and relation words be learned
            # within minutes (measured in docs/experiments.md).
            vision_position_init_scale=10.0,
        )
        defaults.update(kwargs)
        return cls(**defaults)


__all__ = ["ASDAConfig"]
