"""A small trained ASDA checkpoint for the inference tests: tiny preset, a few optimiser steps on synthetic scenes.

Seconds on CPU instead of a `run_ris.py` run; the folder has what a run writes for inference (weights,
config, code, processor), which is all the pipeline needs. A few steps do not make a segmenter: its probabilities
can lie all above or all below the published 0.35. So the checkpoint's `mask_threshold` is set to the
60th percentile of its probabilities on the training images; masks then cover part of each image and
differ between images, which is what comparisons of masks need.
"""

import pytest
import torch

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.data.synthetic import build_synthetic_dataset


def synthetic_rows(num: int, split: str = "val", seed: int = 0):
    sizes = {"train": (num, 0, 0), "val": (0, num, 0), "test": (0, 0, num)}[split]
    return build_synthetic_dataset(*sizes, seed=seed)[split]


def make_trained_checkpoint(folder, steps: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(hidden_dropout=0.0))
    processor = ASDAProcessor.from_model_config(model.config)
    rows = synthetic_rows(8, "train", seed=seed)
    batch = processor(images=list(rows["image"]), text=list(rows["sentence"]), masks=list(rows["mask"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        index = torch.arange(4) + 4 * (step % 2)
        loss = model(
            pixel_values=batch["pixel_values"][index],
            input_ids=batch["input_ids"][index],
            attention_mask=batch["attention_mask"][index],
            labels=batch["labels"][index],
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits
    model.config.mask_threshold = round(float(torch.quantile(logits.sigmoid().flatten(), 0.6)), 4)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


_SESSION = {}  # each test module imports the fixture (a separate definition): share the checkpoint here


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """(folder, model, processor) of one small trained checkpoint shared by all tests of a session."""
    if "checkpoint" not in _SESSION:
        folder = tmp_path_factory.mktemp("asda_checkpoint")
        model, processor = make_trained_checkpoint(folder)
        _SESSION["checkpoint"] = (folder, model, processor)
    return _SESSION["checkpoint"]


def script_module(name: str):
    """scripts/<name>.py imported in-process (scripts are no package; a subprocess would pay the imports again)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"asda_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_main(name: str):
    """`main(argv)` of scripts/<name>.py."""
    return script_module(name).main
