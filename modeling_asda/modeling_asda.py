# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""ASDA: Adaptive Selection with Dual Alignment for referring image segmentation (ACM MM 2024).

Pipeline (paper §3, docs/architecture.md): CLIP ViT + CLIP text encoder -> adaptive selection of one low and one mid
ViT layer per expression (AFS) -> sentence-gated top layer F_G and scale-wise aggregation (SFA) ->
word-guided dual-branch aligner (WGDA) -> mask logits at 8x the ViT grid (208x208 for a 416 input).
"""

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel, PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import ModelOutput, logging

from .configuration_asda import ASDAConfig
from .modeling_aligner import ASDA_ALIGNERS, ASDACoefficientHead
from .modeling_fusion import (
    ASDAConcatFusion,
    ASDAGridScaleAggregator,
    ASDAScaleWiseAggregator,
    ASDASentenceVisualFusion,
)
from .modeling_layers import ASDAPositionMixin, sine_position_encoding, tokens_to_grid
from .modeling_loss import asda_mask_loss
from .modeling_refiner import ASDAMaskRefiner
from .modeling_selection import ASDAAdaptiveFeatureSelection, ASDASelectionOutput
from .modeling_target import ASDANoTargetHead, no_target_loss, target_labels_from_masks

logger = logging.get_logger(__name__)

# CLIP tensors ASDA never uses: the image-text logit scale, the pooled-CLS projection and its post-LN.
UNUSED_CLIP_KEYS = (
    "logit_scale",
    "visual_projection.weight",
    "vision_model.post_layernorm.weight",
    "vision_model.post_layernorm.bias",
)


@dataclass
class ASDAOutput(ModelOutput):
    """
    Output of [`ASDAForReferringSegmentation`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            focal_weight * focal + dice_weight * dice (+ lovasz_weight * Lovász hinge) on the logits against the labels
            resized to the logits, plus no_target_loss_weight * BCE of the target logits when the model has a
            no-target head.
        logits (`torch.FloatTensor` of shape `(batch_size, 1, mask_size, mask_size)`):
            Mask logits in the letterboxed input frame, `config.mask_size` wide (208 for a 416 input). Use
            `ASDAProcessor.post_process_masks` to get masks at the original image size.
        target_logits (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
            Log-odds that the expression names something in the image (models with `config.no_target_head`;
            None otherwise). Pass them to `post_process_masks` to empty the masks of absent targets.
        decoder_logits (`torch.FloatTensor` of shape `(batch_size, 1, decoder_mask_size, decoder_mask_size)`, *optional*):
            The decoder's logits (eq. 10); `logits` are these unless the model has a mask refiner. Returned with
            `output_feature_maps=True`.
        low_layer_index, mid_layer_index (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            The 1-based ViT layer each sample used as F_L and F_M (None when `feature_selection="none"`).
        low_selection_probs, mid_selection_probs (`torch.FloatTensor` of shape `(batch_size, num_candidates)`, *optional*):
            Softmax of the selection network over the candidate layers (adaptive selection only).
        coarse_features (`torch.FloatTensor` of shape `(batch_size, C, grid, grid)`, *optional*):
            F_coarse, before any word-level interaction (paper Fig. 4). Returned with `output_feature_maps=True`.
        fine_features (`torch.FloatTensor` of shape `(batch_size, C, grid, grid)`, *optional*):
            F_fine, after the word cross-attention (paper Fig. 4; aligners "dual" and "single").
        response_masks (`torch.FloatTensor` of shape `(batch_size, N_c, mask_size, mask_size)`, *optional*):
            The activated response masks M' of the dual-branch aligner.
        coefficients (`torch.FloatTensor` of shape `(batch_size, N_c)`, *optional*):
            f_coef, the tanh coefficients that combine the response masks.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    target_logits: torch.FloatTensor | None = None
    decoder_logits: torch.FloatTensor | None = None
    low_layer_index: torch.LongTensor | None = None
    mid_layer_index: torch.LongTensor | None = None
    low_selection_probs: torch.FloatTensor | None = None
    mid_selection_probs: torch.FloatTensor | None = None
    coarse_features: torch.FloatTensor | None = None
    fine_features: torch.FloatTensor | None = None
    response_masks: torch.FloatTensor | None = None
    coefficients: torch.FloatTensor | None = None


class ASDAPreTrainedModel(PreTrainedModel):
    config_class = ASDAConfig
    base_model_prefix = "asda"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "ASDALocalSelfAttentionLayer", "ASDAWordCrossAttentionLayer"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the `custom_pipelines` entry of the referring-segmentation pipeline.

        Any folder saved this way (with the processor saved beside it) serves
        `pipeline("referring-image-segmentation", model=folder, trust_remote_code=True)`: the import below makes
        `pipeline_asda.py` one of the files transformers copies next to the weights.
        """
        from .pipeline_asda import pipeline_config_entry

        self.config.custom_pipelines = pipeline_config_entry()
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def initialize_weights(self):
        # The mask refiner is initialised last, after the coefficient re-initialisation below, so that every other
        # weight draws the same random numbers as in a model without it.
        refiner = self._modules.pop("mask_refiner", None)
        try:
            self._initialize_without_refiner()
        finally:
            if refiner is not None:
                self._modules["mask_refiner"] = refiner
        if refiner is not None:
            with hf_init.guard_torch_init_functions():  # weights loaded from a checkpoint stay as loaded
                refiner.smart_apply(self._initialize_weights, self.is_custom_code())

    def _initialize_without_refiner(self):
        super().initialize_weights()
        # After CLIP initialised its own embeddings (its sub-model has its own _init_weights, so ours never sees
        # the table). A table loaded from a checkpoint carries `_is_hf_initialized` and is left alone.
        scale = self.config.vision_position_init_scale
        vision = getattr(self, "vision_model", None)
        if scale > 0 and vision is not None:
            table = vision.embeddings.position_embedding.weight
            if not getattr(table, "_is_hf_initialized", False):
                grid, dim = self.config.grid_size, table.shape[1]
                sincos = sine_position_encoding(grid, grid, dim, normalize=False) * scale
                table.copy_(torch.cat([torch.zeros(1, dim, dtype=sincos.dtype), sincos]))  # class token: no position
        for module in self.modules():
            if isinstance(module, ASDACoefficientHead):
                _init_coefficient_output(module)

    @torch.no_grad()
    def _init_weights(self, module):
        # CLIP sub-models initialise themselves (transformers dispatches to their own _init_weights).
        # Convolutions are scaled by fan_in: an output's variance is fan_in * Var(w) * E[x^2], so this keeps every
        # head at its input's scale at any width, where fan_out (or a fixed std on a wide input) blows up layers with
        # few outputs or many inputs: at paper width the mask logits and the tanh coefficients would start
        # saturated. The coefficients start at std sqrt(2 / N_c) (`initialize_weights`), so the sum over N_c masks
        # starts near unit spread.
        std = self.config.initializer_range
        if isinstance(module, ASDAPositionMixin):
            module.reset_position()
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.ConvTranspose2d):
            # With stride = kernel every output sees one tap of each input channel.
            taps = math.prod(k // s for k, s in zip(module.kernel_size, module.stride)) or 1
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / (module.in_channels * taps)))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                nn.init.zeros_(module.running_mean)
                nn.init.ones_(module.running_var)
                nn.init.zeros_(module.num_batches_tracked)


@torch.no_grad()
def _init_coefficient_output(head: ASDACoefficientHead):
    """The layer that produces the pre-tanh coefficients starts at std sqrt(2 / N_c) for unit-variance inputs.

    Flatten pooling: the Linear over the flattened maps. Mean pooling: the last conv (the spatial mean of a
    map has at most the map's variance). Skipped when the weight came from a checkpoint.
    """
    last = head.convs[-1]
    target = math.sqrt(2.0 / last.out_channels)
    if head.pooling == "flatten":
        weight, std = head.reduce.weight, target / math.sqrt(head.reduce.in_features)
    else:  # the conv's input is LeakyReLU(BatchNorm(.)), second moment ~1/2
        weight, std = last.weight, target * math.sqrt(2.0 / last.weight[0].numel())
    if not getattr(weight, "_is_hf_initialized", False):
        weight.normal_(0.0, std)


def resize_position_embeddings(table: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Resize a ViT position table (1 + g*g, D) to (1 + grid_size^2, D): class row kept, grid bilinear.

    Done once when CLIP weights are loaded (as the published code does), never per forward pass.
    """
    class_row, grid = table[:1], table[1:]
    old = int(round(grid.shape[0] ** 0.5))
    if old * old != grid.shape[0]:
        raise ValueError(f"position table with {grid.shape[0]} grid rows is not a square grid")
    if old == grid_size:
        return table.clone()
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(grid_size * grid_size, -1).to(table.dtype)
    return torch.cat([class_row, grid], dim=0)


class ASDAForReferringSegmentation(ASDAPreTrainedModel):
    def __init__(self, config: ASDAConfig):
        super().__init__(config)
        vision_dim = config.vision_config.hidden_size
        dim = config.projection_dim
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        # Only per-layer hidden states are used; the pooled-CLS norm would be a dead parameter.
        del self.vision_model.post_layernorm
        self.text_projection = nn.Linear(config.text_config.hidden_size, dim, bias=False)

        self.fusion = ASDASentenceVisualFusion(vision_dim, dim)
        if config.feature_selection == "adaptive":
            self.feature_selection = ASDAAdaptiveFeatureSelection(config)
        if config.feature_selection != "none":
            if config.fusion == "sfa" and config.sfa_scales == "grid":
                self.aggregator = ASDAGridScaleAggregator(vision_dim, dim, config.sfa_hidden_dim)
            elif config.fusion == "sfa":
                self.aggregator = ASDAScaleWiseAggregator(vision_dim, dim, config.sfa_hidden_dim)
            else:
                self.aggregator = ASDAConcatFusion(vision_dim, dim)
        self.aligner = ASDA_ALIGNERS[config.aligner](config)
        if config.no_target_head:
            self.no_target_head = ASDANoTargetHead(config)
        if config.mask_refiner_dim:
            # Built on a forked RNG and initialised last (`initialize_weights`): the rest of the model starts exactly
            # as it would without it.
            with torch.random.fork_rng(devices=[]):
                self.mask_refiner = ASDAMaskRefiner(config)
        for name, module in self.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not name.startswith(("text_", "vision_")):
                module.momentum = config.batch_norm_momentum
        self.post_init()

    def add_no_target_head(self):
        """Add a freshly initialised no-target head (e.g. before fine-tuning on gRefCOCO); sets the config flag."""
        if getattr(self, "no_target_head", None) is not None:
            return
        parameter = next(self.parameters())
        head = ASDANoTargetHead(self.config).to(device=parameter.device, dtype=parameter.dtype)
        head.apply(self._init_weights)
        self.no_target_head = head
        self.config.no_target_head = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:  # its message names no file
            where = os.path.join(str(pretrained_model_name_or_path), "model.safetensors")
            where = where if os.path.isfile(where) else pretrained_model_name_or_path
            raise OSError(
                f"{where}: the safetensors weights cannot be read ({err}). The file is damaged or incomplete (an "
                "interrupted copy or download?): copy or download the checkpoint again."
            ) from err

    def get_input_embeddings(self) -> nn.Module:
        # The word table; FSDP gives it its own shard unit, resize_token_embeddings finds it here.
        return self.text_model.get_input_embeddings()

    # ----------------------------------------------------------------------------------------- inputs
    def _check_inputs(self, pixel_values, input_ids, attention_mask):
        size = self.config.image_size
        if not torch.is_tensor(pixel_values) or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values).__name__
            raise ValueError(
                f"pixel_values must be a (batch, 3, {size}, {size}) tensor; got {shape}. Use ASDAProcessor."
            )
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(
                f"pixel_values are {tuple(pixel_values.shape[-2:])} but this model takes {size}x{size} letterboxed "
                f"images; use ASDAProcessor(image_size={size})."
            )
        if not torch.is_tensor(input_ids) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if torch.is_tensor(input_ids) else type(input_ids).__name__
            raise ValueError(f"input_ids must be a (batch, length) tensor; got {shape}.")
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"got {pixel_values.shape[0]} images but {input_ids.shape[0]} expressions; each expression needs its image."
            )
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}."
            )
        if torch.compiler.is_compiling():
            return  # the checks below read tensor values: under torch.compile each would split the graph
        vocab = self.config.text_config.vocab_size
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab):
            raise ValueError(
                f"input_ids must lie in [0, {vocab}); got [{input_ids.min().item()}, {input_ids.max().item()}]."
            )
        eos = self.config.text_config.eos_token_id
        has_eos = (input_ids == eos).any(dim=-1)
        if not bool(has_eos.all()):
            rows = torch.nonzero(~has_eos).flatten().tolist()
            raise ValueError(
                f"input_ids rows {rows} contain no end-of-text token ({eos}); tokenize with ASDAProcessor."
            )
        if attention_mask is not None:
            empty = attention_mask.sum(dim=-1) == 0
            if bool(empty.any()):
                raise ValueError(f"attention_mask rows {torch.nonzero(empty).flatten().tolist()} attend to no token.")

    # --------------------------------------------------------------------------------------- encoders
    def _vision_hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """[embeddings, layer 1, ..., layer N]: each (B, 1 + grid^2, D_v), class token first."""
        vision = self.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        states = [hidden]
        for layer in vision.encoder.layers:
            hidden = layer(hidden, None)  # positional: gradient checkpointing needs the tensor as an arg
            states.append(hidden)
        return states

    def _text_features(self, input_ids, attention_mask):
        """f_T (B, L, C) word features after the text projection, f_E (B, C) the EOT word's feature, and with
        same-layer scoring the EOT token of every text layer [embeddings, layer 1, ...] (else None)."""
        config = self.config
        same_layer = config.selection_text_feature == "same_layer" and config.feature_selection == "adaptive"
        text = self.text_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=same_layer)
        words = self.text_projection(text.last_hidden_state)
        eot = (input_ids == self.config.text_config.eos_token_id).int().argmax(dim=-1)
        rows = torch.arange(words.shape[0], device=words.device)
        sentence = words[rows, eot]
        layer_eot = [hidden[rows, eot] for hidden in text.hidden_states] if same_layer else None
        return words, sentence, layer_eot

    # ---------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        target_labels: torch.Tensor | None = None,
        output_feature_maps: bool = False,
        return_dict: bool | None = None,
    ) -> ASDAOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
                Letterboxed, CLIP-normalised images from [`ASDAProcessor`].
            input_ids (`torch.LongTensor` of shape `(batch_size, max_text_length)`):
                CLIP BPE ids `[SOT, ..., EOT, 0, ...]`; one expression per image.
            attention_mask (`torch.LongTensor` of shape `(batch_size, max_text_length)`, *optional*):
                1 for SOT..EOT, 0 for padding. Padding words are masked in every word attention.
            labels (`torch.Tensor` of shape `(batch_size, H, W)` or `(batch_size, 1, H, W)`, *optional*):
                Binary ground-truth masks in the letterboxed frame, at the input size or the logits size.
            target_labels (`torch.Tensor` of shape `(batch_size,)`, *optional*):
                1 where the expression names something, 0 where it names nothing (an all-zero mask in `labels`);
                trains the no-target head. Read from `labels` when not given; ignored without the head.
            output_feature_maps (`bool`, defaults to `False`):
                Also return F_coarse, F_fine, the response masks and the coefficients (paper Fig. 4).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(pixel_values, input_ids, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)

        states = self._vision_hidden_states(pixel_values)
        words, sentence, layer_eot = self._text_features(input_ids, attention_mask)
        batch, grid = pixel_values.shape[0], self.config.image_size // self.config.vision_config.patch_size

        def to_map(hidden: torch.Tensor) -> torch.Tensor:
            return tokens_to_grid(hidden[:, 1:], grid, grid)

        coarse = self.fusion(to_map(states[-1]), sentence)  # F_G
        selection = self._select_layers(states, sentence, batch, layer_eot)
        if selection is not None:
            coarse = self.aggregator(
                coarse, to_map(selection.mid_features), to_map(selection.low_features)
            )  # F_coarse
        if self.config.relu_coarse_features:
            coarse = F.relu(coarse)

        word_mask = attention_mask.bool() if self.config.mask_padding_words else torch.ones_like(input_ids).bool()
        head = self.aligner(coarse, words, word_mask)
        loss = asda_mask_loss(head.logits, labels, self.config) if labels is not None else None
        logits = head.logits
        if getattr(self, "mask_refiner", None) is not None:
            logits = self.mask_refiner(pixel_values, head.logits)
            if labels is not None:
                loss = loss + asda_mask_loss(logits, labels, self.config)
        target_logits = None
        if getattr(self, "no_target_head", None) is not None:
            grid_features = head.fine_features if head.fine_features is not None else coarse
            target_logits = self.no_target_head(grid_features, sentence, head.logits)
            if labels is not None:
                if target_labels is None:
                    target_labels = target_labels_from_masks(labels)
                target_labels = target_labels.to(target_logits.device).reshape(-1)
                loss = loss + self.config.no_target_loss_weight * no_target_loss(target_logits, target_labels)

        output = ASDAOutput(loss=loss, logits=logits, target_logits=target_logits)
        if selection is not None:
            output.low_layer_index = selection.low_layer_index
            output.mid_layer_index = selection.mid_layer_index
            output.low_selection_probs = selection.low_selection_probs
            output.mid_selection_probs = selection.mid_selection_probs
        if output_feature_maps:
            output.decoder_logits = head.logits
            output.coarse_features = coarse
            output.fine_features = head.fine_features
            output.response_masks = head.response_masks
            output.coefficients = head.coefficients
        return output if return_dict else output.to_tuple()

    def _select_layers(self, states: list[torch.Tensor], sentence: torch.Tensor, batch: int, layer_eot=None):
        """F_L and F_M (AFS, or the configured layers); None when the model uses the top layer only."""
        mode = self.config.feature_selection
        if mode == "adaptive":
            low, mid = self.config.low_candidate_layers, self.config.mid_candidate_layers
            low_text = mid_text = None
            if layer_eot is not None:  # vision layer l is scored with text layer l
                low_text = torch.stack([layer_eot[i] for i in low], dim=1)
                mid_text = torch.stack([layer_eot[i] for i in mid], dim=1)
            return self.feature_selection(
                torch.stack([states[i] for i in low], dim=1),
                torch.stack([states[i] for i in mid], dim=1),
                sentence,
                low_text,
                mid_text,
            )
        if mode == "manual":
            low_layer, mid_layer = self.config.manual_layers
            device = sentence.device
            return ASDASelectionOutput(
                low_features=states[low_layer],
                mid_features=states[mid_layer],
                low_layer_index=torch.full((batch,), low_layer, dtype=torch.long, device=device),
                mid_layer_index=torch.full((batch,), mid_layer, dtype=torch.long, device=device),
            )
        return None

    # -------------------------------------------------------------------------------- CLIP weights
    @classmethod
    def from_clip(cls, clip_name_or_path: str, **config_overrides) -> "ASDAForReferringSegmentation":
        """Build ASDA around a CLIPModel checkpoint (Hub id or local folder).

        Every CLIP tensor ASDA uses is copied exactly; the vision position table is resized once to the
        grid of `image_size`. The logit scale, the visual projection and the vision post-LN (pooled CLS
        only) are not used by ASDA and are left out. `config_overrides` go to `ASDAConfig`.
        """
        clip = CLIPModel.from_pretrained(clip_name_or_path)
        text_config = clip.config.text_config.to_dict()
        if text_config.get("vocab_size") == 49408 and text_config.get("eos_token_id") != 49407:
            # Older CLIP configs carry eos_token_id=2; the CLIP BPE end-of-text id is 49407.
            text_config["eos_token_id"] = 49407
        config_kwargs = dict(
            text_config=text_config,
            vision_config=clip.config.vision_config.to_dict(),
            projection_dim=clip.config.projection_dim,
        )
        config_kwargs.update(config_overrides)
        model = cls(ASDAConfig(**config_kwargs))

        source = clip.state_dict()
        target = model.state_dict()
        grid = model.config.grid_size
        missing = [key for key in source if key not in UNUSED_CLIP_KEYS and key not in target]
        if missing:
            raise ValueError(f"{clip_name_or_path} has CLIP tensors ASDA cannot place: {missing[:5]}")
        with torch.no_grad():
            for key, value in source.items():
                if key in UNUSED_CLIP_KEYS:
                    continue
                if key == "vision_model.embeddings.position_embedding.weight":
                    value = resize_position_embeddings(value, grid)
                if target[key].shape != value.shape:
                    raise ValueError(
                        f"{key}: CLIP shape {tuple(value.shape)} does not fit ASDA {tuple(target[key].shape)}"
                    )
                target[key].copy_(value)
        logger.info(
            f"Copied {len(source) - len(UNUSED_CLIP_KEYS)} CLIP tensors from {clip_name_or_path}; position table -> {grid}x{grid}."
        )
        model.config.clip_name_or_path = str(clip_name_or_path)
        return model


ASDAConfig.register_for_auto_class()
ASDAForReferringSegmentation.register_for_auto_class("AutoModel")

__all__ = ["ASDAForReferringSegmentation", "ASDAOutput", "ASDAPreTrainedModel", "resize_position_embeddings"]
