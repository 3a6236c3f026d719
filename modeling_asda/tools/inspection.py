"""Is a configuration healthy before it costs GPU hours? Statistics of one forward/backward pass.

`head_figures` gives the numbers that decide whether the heads start in their working range: mask logit
spread and the share beyond |5| (sigmoid gradient < 0.7%), the share of coefficients with |tanh| > 0.96
(gradient < 8% of the linear regime), the pre-tanh spread, and how peaked the layer selection is.
`module_statistics` gives, per module, the output spread, its saturated share and the gradient norm of
the module's parameters, so a dead or exploding part shows up by name.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..configuration_asda import ASDAConfig

SOT, EOT = 49406, 49407
LOGIT_LIMIT = 5.0  # sigmoid'(5) = 0.0066: a pixel beyond this barely learns
TANH_LIMIT = 0.96  # tanh'(atanh(0.96)) = 0.078


def random_inputs(config: ASDAConfig, batch: int = 2, seed: int = 0) -> dict:
    """Gaussian images, random word ids between SOT/EOT (different lengths), random binary labels."""
    generator = torch.Generator().manual_seed(seed)
    size, length = config.image_size, config.max_text_length
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row in range(batch):
        words = min(3 + row, length - 2)
        tokens = torch.randint(300, 40000, (words,), generator=generator)
        seq = torch.cat([torch.tensor([SOT]), tokens, torch.tensor([EOT])])
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    labels = (torch.rand(batch, size, size, generator=generator) > 0.6).float()
    return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}


def _coefficient_head(model: nn.Module):
    aligner = getattr(model, "aligner", None)
    return getattr(aligner, "coefficients", None) if aligner is not None else None


@dataclass
class _Capture:
    value: torch.Tensor | None = None


def _capture_pre_tanh(head) -> tuple[_Capture, object]:
    """A hook on the layer whose output the coefficient head squashes with tanh."""
    capture = _Capture()
    if getattr(head, "pooling", None) == "flatten":
        layer, reduce = head.reduce, None
    else:
        layer, reduce = head.convs[-1], (lambda maps: maps.mean(dim=(-2, -1)))

    def hook(module, args, output):
        capture.value = (reduce(output) if reduce else output).detach().float()

    return capture, layer.register_forward_hook(hook)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of each row divided by log(K): 1 = uniform, 0 = one-hot."""
    probs = probs.float().clamp_min(1e-12)
    return -(probs * probs.log()).sum(-1) / math.log(max(probs.shape[-1], 2))


def selection_summary(probs: torch.Tensor, layers) -> dict:
    """Share of samples choosing each candidate, mean max probability and mean normalised entropy."""
    chosen = probs.argmax(-1)
    shares = {f"L{layer}": float((chosen == k).float().mean()) for k, layer in enumerate(layers)}
    return {
        "shares": shares,
        "max_prob": float(probs.float().max(-1).values.mean()),
        "entropy": float(_entropy(probs).mean()),
    }


def head_figures(model: nn.Module, inputs: dict, train: bool = True) -> dict:
    """The health figures of one forward pass (train mode by default: BatchNorm uses batch statistics)."""
    was_training = model.training
    model.train(train)
    head = _coefficient_head(model)
    capture, handle = _capture_pre_tanh(head) if head is not None else (None, None)
    try:
        with torch.no_grad():
            out = model(**inputs, output_feature_maps=True)
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    logits = out.logits.float()
    figures = {
        "logit_std": float(logits.std()),
        "logit_beyond_5": float((logits.abs() > LOGIT_LIMIT).float().mean()),
        "loss": float(out.loss) if out.loss is not None else None,
    }
    if out.coefficients is not None:
        coefficients = out.coefficients.float()
        figures["coef_saturated"] = float((coefficients.abs() > TANH_LIMIT).float().mean())
        figures["coef_pre_tanh_std"] = float(capture.value.std()) if capture.value is not None else None
    config = model.config
    for level, probs, layers in (
        ("low", out.low_selection_probs, config.low_candidate_layers),
        ("mid", out.mid_selection_probs, config.mid_candidate_layers),
    ):
        if probs is not None:
            summary = selection_summary(probs, layers)
            figures[f"{level}_max_prob"] = summary["max_prob"]
            figures[f"{level}_entropy"] = summary["entropy"]
    return figures


def _first_tensor(value):
    if torch.is_tensor(value):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def module_statistics(model: nn.Module, inputs: dict, max_depth: int = 3, skip_encoders: bool = True) -> list[dict]:
    """Per module (names up to `max_depth` dots): output std, saturated share, parameter gradient norm.

    Saturated share: |y| > 0.96 for outputs bounded by 1 (tanh, sigmoid), |y| > 5 otherwise.
    One training-mode forward + backward of the mask loss; gradients are zeroed before and left in place.
    """
    named = [
        (name, module)
        for name, module in model.named_modules()
        if name
        and name.count(".") < max_depth
        and not isinstance(module, (nn.ModuleList, nn.Dropout, nn.Identity))
        and not (skip_encoders and name.split(".")[0] in ("text_model", "vision_model") and name.count(".") > 0)
    ]
    outputs = {}
    handles = []
    for name, module in named:

        def hook(module, args, output, name=name):
            tensor = _first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                outputs.setdefault(name, tensor.detach().float())

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        loss = model(**inputs).loss
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    rows = []
    for name, module in named:
        params = [p for p in module.parameters() if p.requires_grad]
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))) if grads else 0.0
        param_norm = float(torch.sqrt(sum((p.detach().float() ** 2).sum() for p in params))) if params else 0.0
        row = {
            "module": name,
            "type": type(module).__name__,
            "params": sum(p.numel() for p in params),
            "grad_norm": grad_norm,
            "grad_to_param": grad_norm / param_norm if param_norm > 0 else None,
        }
        output = outputs.get(name)
        if output is not None and output.numel() > 1:
            bounded = float(output.abs().max()) <= 1.0
            limit = TANH_LIMIT if bounded else LOGIT_LIMIT
            row.update(
                out_std=float(output.std()),
                out_mean_abs=float(output.abs().mean()),
                saturated=float((output.abs() > limit).float().mean()),
            )
        rows.append(row)
    return rows


# One switch at a time from the preset: every aligner, fusion, coefficient pooling, selector and selection mode.
VARIANTS = {
    "default": {},
    "aligner=single": {"aligner": "single"},
    "aligner=none": {"aligner": "none"},
    "fusion=concat": {"fusion": "concat"},
    "coefficient_pooling=flatten": {"coefficient_pooling": "flatten"},
    "coefficient_pooling=mean": {"coefficient_pooling": "mean"},
    "selector=mlp": {"selector": "mlp"},
    "selector=conv": {"selector": "conv"},
    "feature_selection=manual": {"feature_selection": "manual"},
    "feature_selection=none": {"feature_selection": "none"},
    "response_activation=sigmoid": {"response_activation": "sigmoid"},
    "selector=shared_linear": {"selector": "shared_linear"},
    "selection_text_feature=same_layer": {"selection_text_feature": "same_layer"},
    # Every published-code switch at once (the model side of the run behind the paper's Table 1).
    "published choices": {
        "selection_text_feature": "same_layer",
        "selector": "shared_linear",
        "selection": "hard",
        "batch_norm_momentum": 0.999,
        "relu_coarse_features": True,
        "normalize_local_positions": False,
        "attention_dropout": 0.1,
        "mask_padding_words": False,
    },
}

FIGURE_COLUMNS = (
    "logit_std",
    "logit_beyond_5",
    "coef_saturated",
    "coef_pre_tanh_std",
    "low_max_prob",
    "low_entropy",
    "mid_max_prob",
    "mid_entropy",
)


def variant_figures(preset: str, variants: dict | None = None, init: str = "default", seed: int = 0, **overrides):
    """{variant name: head figures} of freshly built models, one switch at a time from `preset`."""
    from ..modeling_asda import ASDAForReferringSegmentation

    results = {}
    for name, switches in (variants or VARIANTS).items():
        torch.manual_seed(seed)
        try:
            config = getattr(ASDAConfig, preset)(**{**overrides, **switches})
        except ValueError as error:  # e.g. same-layer scoring with a text encoder shallower than the candidates
            results[name] = {"not_applicable": str(error)}
            continue
        model = ASDAForReferringSegmentation(config)
        if init == "fan_out":
            apply_fan_out_init(model)
        results[name] = head_figures(model, random_inputs(config, 2, seed))
    return results


def format_variant_table(results: dict) -> str:
    lines = ["| variant | " + " | ".join(FIGURE_COLUMNS) + " |", "|---|" + "---:|" * len(FIGURE_COLUMNS)]
    for name, figures in results.items():
        if "not_applicable" in figures:
            lines.append(f"| {name} | " + " | ".join(["n/a"] * len(FIGURE_COLUMNS)) + " |")
            continue
        cells = []
        for column in FIGURE_COLUMNS:
            value = figures.get(column)
            spec = ".1%" if column in ("logit_beyond_5", "coef_saturated") else ".2f"
            cells.append("" if value is None else format(value, spec))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value, spec=".3g"):
    return "" if value is None else format(value, spec)


def format_figures(figures: dict) -> str:
    names = [key for key in figures if figures[key] is not None]
    return "\n".join(f"{name:>20}: {_fmt(figures[name], '.4g')}" for name in names)


def format_module_table(rows: list[dict]) -> str:
    header = (
        "| module | type | params | out std | saturated | grad norm | grad/param |\n|---|---|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"| {row['module']} | {row['type']} | {row['params']} | {_fmt(row.get('out_std'))} | "
            f"{_fmt(row.get('saturated'), '.1%')} | {_fmt(row['grad_norm'])} | {_fmt(row['grad_to_param'])} |"
        )
    return "\n".join(lines)


@torch.no_grad()
def apply_fan_out_init(model: nn.Module) -> nn.Module:
    """Re-initialise the heads with the common detection default, to compare with the model's own scheme.

    Kaiming normal with `fan_out` on every convolution and a truncated normal of std 0.02 on every linear
    layer (biases zero); the CLIP encoders are left as they are. At paper width this saturates the mask
    logits and the tanh coefficients (see `head_figures`).
    """
    for name, module in model.named_modules():
        if name.split(".")[0] in ("text_model", "vision_model"):
            continue
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return model
