"""`ASDAOnnxModel`: an exported folder run with ONNX Runtime, returning the same output fields as the torch model.

The folder is what `scripts/export_onnx.py` writes: `model.onnx` (fp32), optionally `model_int8.onnx`, the
checkpoint's `config.json` (threshold, image size) and its processor files. The class is a `torch.nn.Module`
only so that `ReferringSegmentationPipeline` (a transformers pipeline) accepts it; it has no parameters.
"""

import json
import os

import numpy as np
import torch
from torch import nn

from ..configuration_asda import ASDAConfig
from ..modeling_asda import ASDAOutput

FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
MANIFEST_FILE = "onnx_export.json"
INPUT_NAMES = ("pixel_values", "input_ids", "attention_mask")


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "ONNX Runtime is not installed: pip install 'asda-transformers[onnx]' (or onnxruntime)"
        ) from err
    return onnxruntime


def make_session(path: str, threads: int | None = None, providers=None):
    """An ONNX Runtime session with all graph optimisations; `threads` sets the intra-op pool (default: ORT's)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=providers or ["CPUExecutionProvider"])


class ASDAOnnxModel(nn.Module):
    """Runs `model.onnx` (or `model_int8.onnx`) of an exported folder; `model(**inputs)` returns an `ASDAOutput`.

    Inputs may be torch tensors or numpy arrays; outputs are torch tensors on the CPU. Only the fields the
    export carries are set: `logits`, `low_layer_index` / `mid_layer_index` where the checkpoint selects
    layers, and `target_logits` where it has a target head.
    """

    main_input_name = "pixel_values"

    def __init__(self, session, config: ASDAConfig, path: str | None = None):
        super().__init__()
        self.session = session
        self.config = config
        self.path = path
        self.output_names = [output.name for output in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        missing = sorted(set(INPUT_NAMES) - set(self.input_names))
        if missing or self.output_names[:1] != ["logits"]:
            raise ValueError(
                f"{path or 'the ONNX model'} is not an ASDA export: inputs {self.input_names}, outputs "
                f"{self.output_names} (expected inputs {list(INPUT_NAMES)} and 'logits' first)"
            )

    @classmethod
    def from_pretrained(
        cls, folder: str, int8: bool = False, file_name: str | None = None, threads=None, providers=None
    ):
        """Load an exported folder. `int8=True` picks `model_int8.onnx`; `file_name` names another file."""
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder!r} is not a folder; pass the output folder of scripts/export_onnx.py")
        file_name = file_name or (INT8_FILE if int8 else FP32_FILE)
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path):
            present = sorted(f for f in os.listdir(folder) if f.endswith(".onnx"))
            hint = " (export with --int8 to get it)" if file_name == INT8_FILE else ""
            raise FileNotFoundError(f"{folder}: no {file_name}{hint}; ONNX files there: {present or 'none'}")
        config = ASDAConfig.from_pretrained(folder)
        return cls(make_session(path, threads=threads, providers=providers), config, path=path)

    # The pipeline and callers of the torch model read these.
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def run(self, feeds: dict) -> dict:
        """Raw ONNX Runtime call: numpy inputs by name -> numpy outputs by name."""
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def forward(self, pixel_values, input_ids, attention_mask=None, **unused) -> ASDAOutput:
        if unused:
            raise TypeError(f"ASDAOnnxModel does not take {sorted(unused)} (the export computes logits only)")
        if attention_mask is None:
            attention_mask = torch.ones_like(torch.as_tensor(input_ids))
        feeds = {
            "pixel_values": _numpy(pixel_values, np.float32),
            "input_ids": _numpy(input_ids, np.int64),
            "attention_mask": _numpy(attention_mask, np.int64),
        }
        size = self.config.image_size
        if feeds["pixel_values"].ndim != 4 or feeds["pixel_values"].shape[1:] != (3, size, size):
            raise ValueError(
                f"pixel_values must be (batch, 3, {size}, {size}); got {feeds['pixel_values'].shape}. Use ASDAProcessor."
            )
        outputs = self.run(feeds)
        fields = {name: torch.from_numpy(value) for name, value in outputs.items()}
        known = {name: value for name, value in fields.items() if name in ASDAOutput.__dataclass_fields__}
        return ASDAOutput(**known)


def _numpy(value, dtype) -> np.ndarray:
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def read_manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def load_onnx_model_and_processor(folder: str, int8: bool = False, threads: int | None = None):
    """An exported folder's `ASDAOnnxModel` and the processor saved with it."""
    from ..processing_asda import ASDAProcessor

    model = ASDAOnnxModel.from_pretrained(folder, int8=int8, threads=threads)
    return model, ASDAProcessor.from_pretrained(folder)
