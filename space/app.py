"""Hugging Face Space entry point: the project's Gradio demo for the checkpoint in ./model (or $ASDA_MODEL).

Environment: ASDA_MODEL (folder or Hub id, default ./model), ASDA_BACKEND (torch or onnxruntime; for
onnxruntime ASDA_MODEL is a scripts/export_onnx.py folder), ASDA_INT8=1 (model_int8.onnx).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the modeling_asda package copied next to this file (a Space installs no package)

from modeling_asda.tools.demo_app import build_demo, load_segmenter  # noqa: E402

MODEL = os.environ.get("ASDA_MODEL", os.path.join(HERE, "model"))
demo = build_demo(
    load_segmenter(MODEL, backend=os.environ.get("ASDA_BACKEND", "torch"), int8=os.environ.get("ASDA_INT8") == "1")
)

if __name__ == "__main__":
    demo.launch()
