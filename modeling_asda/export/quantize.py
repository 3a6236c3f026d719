"""int8 versions of an exported model with ONNX Runtime's quantisation tools: dynamic and static.

- dynamic: weights int8 ahead of time, activations quantised per call from their observed range; only
  matrix products (MatMul / Gemm), since ONNX Runtime's dynamic convolution (ConvInteger) is slower than fp32.
- static: weights and activations int8 (QDQ, unsigned activations and signed per-channel weights: the
  fast pair on x86 with VNNI); activation ranges from a calibration set run through the fp32 model.
  Convolutions are quantised too (ASDA's scale-wise aggregator is ~45% of the FLOPs at 416²).

The export keeps whichever is better on the self-check (see `check.choose_int8`).
"""

import os
import shutil
import tempfile


def _quantization():
    from .onnx_model import require_onnxruntime

    require_onnxruntime()
    from onnxruntime import quantization

    return quantization


def preprocess_for_quantization(source: str, target: str) -> str:
    """ONNX Runtime's recommended pre-pass (ONNX shape inference + graph optimisation) -> `target`.

    The exporter's intermediate shape annotations are dropped first: ONNX's own shape inference disagrees
    with a few of them and then refuses the graph. ONNX Runtime's symbolic shape inference is skipped: it
    does not complete on this graph (the dynamic batch meets data-dependent indexing in the selection).
    """
    import onnx

    q = _quantization()
    model = onnx.load(source)
    del model.graph.value_info[:]
    stripped = target + ".stripped.onnx"
    onnx.save(model, stripped)
    del model
    # The pre-pass writes scratch files into the working directory: keep them in the target's folder.
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(target)))
    try:
        q.shape_inference.quant_pre_process(
            os.path.abspath(stripped), os.path.abspath(target), skip_symbolic_shape=True
        )
    finally:
        os.chdir(cwd)
    os.remove(stripped)
    return target


def quantize_dynamic_int8(source: str, target: str) -> str:
    q = _quantization()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = preprocess_for_quantization(source, os.path.join(tmp, "prepared.onnx"))
        q.quantize_dynamic(
            prepared, target, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, weight_type=q.QuantType.QInt8
        )
    return target


class _FeedsReader:
    """The CalibrationDataReader protocol over a list of numpy feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):
        raise NotImplementedError


# Modules left in fp32 by the static quantiser: the layer selection is an argmax over near scores, and int8
# noise there picks other layers (seen on the tiny preset: 25% of the low-layer choices changed).
FP32_MODULES = ("feature_selection",)


def nodes_in_modules(path: str, modules=FP32_MODULES) -> list[str]:
    """Names of the exported graph's nodes traced inside any of the model's `modules` (attribute names).

    Read from the exporter's name scopes, which ONNX Runtime's pre-pass drops; node names survive it.
    """
    import ast

    import onnx

    model = onnx.load(path, load_external_data=False)
    names = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "[]")
        modules_of_node = {scope.rsplit(".", 1)[-1] for scope in ast.literal_eval(scopes)}
        if modules_of_node & set(modules):
            names.append(node.name)
    return names


def quantize_static_int8(source: str, target: str, calibration_feeds: list[dict], exclude_modules=FP32_MODULES) -> str:
    """QDQ int8 with MinMax activation ranges from `calibration_feeds` (numpy inputs by name)."""
    q = _quantization()
    if not calibration_feeds:
        raise ValueError("static quantisation needs at least one calibration batch")
    reader = _FeedsReader(calibration_feeds)
    reader.rewind = lambda: None  # one pass is all MinMax needs
    with tempfile.TemporaryDirectory() as tmp:
        exclude = nodes_in_modules(source, exclude_modules) if exclude_modules else []
        prepared = preprocess_for_quantization(source, os.path.join(tmp, "prepared.onnx"))
        q.quantize_static(
            prepared,
            target,
            reader,
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
    return target


def replace_file(source: str, target: str):
    shutil.move(source, target)
