"""Where ONNX Runtime spends its time: kernel time per operator type, from ONNX Runtime's own profiler."""

import collections
import json
import os
import tempfile

import numpy as np

from .onnx_model import require_onnxruntime


def profile_operators(path: str, image_size: int, text_length: int, batch: int = 1, runs: int = 3) -> list[dict]:
    """Kernel time per operator type over `runs` calls (after one untimed call) on random inputs, largest first."""
    ort = require_onnxruntime()
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        ids = np.zeros((batch, text_length), dtype=np.int64)
        ids[:, :4] = [49406, 320, 1000, 49407]  # start, two words, end of text
        feeds = {
            "pixel_values": np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size), np.float32),
            "input_ids": ids,
            "attention_mask": (ids != 0).astype(np.int64),
        }
        session.run(None, feeds)  # warm-up outside the profile
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(scratch, "ort")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    time_us, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            time_us[op] += event["dur"]
            count[op] += 1
    total = sum(time_us.values()) or 1
    return [
        {"op": op, "ms_per_run": us / runs / 1e3, "share": us / total, "nodes": count[op] // runs}
        for op, us in time_us.most_common()
    ]
