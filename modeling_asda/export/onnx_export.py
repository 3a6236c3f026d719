"""The whole ASDA model as one ONNX graph: (pixel_values, input_ids, attention_mask) -> logits, selected layers.

`torch.onnx.export(..., dynamo=True)` (the torch.export-based exporter) writes it. Why not optimum:
optimum-onnx 0.1.0, the package that holds optimum's ONNX exporter since optimum 2, requires
transformers < 4.58 and fails to import with transformers 5 (docs/export.md). Why not the older
TorchScript exporter (`dynamo=False`): its graph gave logits off by up to ~15 on the tiny preset.
"""

import os

import torch
from torch import nn

from .onnx_model import FP32_FILE, INPUT_NAMES

# Output order of the export: logits first (what every consumer reads), then the optional fields.
OPTIONAL_OUTPUTS = ("low_layer_index", "mid_layer_index", "target_logits")
DEFAULT_OPSET = 18


class ExportableASDA(nn.Module):
    """The model's forward with positional inputs and a flat tuple of the outputs the checkpoint produces."""

    def __init__(self, model, output_names):
        super().__init__()
        self.model = model
        self.output_names = tuple(output_names)

    def forward(self, pixel_values, input_ids, attention_mask):
        outputs = self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
        return tuple(getattr(outputs, name) for name in self.output_names)


def output_names_for(model, inputs: dict) -> list[str]:
    """'logits' and whichever optional fields this checkpoint's forward fills (selection, target head)."""
    with torch.inference_mode():
        outputs = model(**{name: inputs[name] for name in INPUT_NAMES})
    return ["logits"] + [name for name in OPTIONAL_OUTPUTS if getattr(outputs, name, None) is not None]


def export_onnx(model, sample_inputs: dict, output_dir: str, opset: int = DEFAULT_OPSET) -> dict:
    """Write `output_dir/model.onnx` with a dynamic batch dimension; returns what was written.

    `sample_inputs` (a processor batch of at least 2 pairs, so that no size-1 batch is specialised) only
    traces shapes; the graph does not depend on its values.
    """
    model = model.eval().float()
    names = output_names_for(model, sample_inputs)
    wrapper = ExportableASDA(model, names).eval()
    args = tuple(sample_inputs[name] for name in INPUT_NAMES)
    if args[0].shape[0] < 2:
        raise ValueError("export_onnx needs sample inputs with a batch of at least 2 (batch 1 would be baked in)")
    batch = torch.export.Dim("batch", min=1, max=4096)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FP32_FILE)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=names,
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    # One file when it fits protobuf's 2 GB limit (ViT-B/16 is ~0.7 GB), so the folder stays easy to move.
    program.save(path, external_data=False)
    return {
        "path": path,
        "outputs": names,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
    }
