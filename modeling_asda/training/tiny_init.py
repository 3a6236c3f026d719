"""Starting weights of the tiny preset: what the default run learned on the built-in data, shipped in the package.

From random weights the tiny preset needs far more than a few thousand expressions before the position and
colour words mean anything: six epochs of a ~3,000-expression REFER-layout set of other shapes, colours and
phrasings leave it below a language-blind guess. Started from the weights of the default run (30,000
built-in expressions, ten minutes on two CPU cores), the same six epochs reach a usable model
(docs/experiments.md has both runs). The file is made by a command, never downloaded:
`python scripts/run_ris.py` then `python scripts/make_tiny_init.py`.
"""

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

SHIPPED_TINY_INIT = Path(__file__).with_name("tiny_synthetic_init.safetensors")
DEFAULT_TINY_INIT = "synthetic"  # what --tiny_init means when not given


def resolve_tiny_init(value: str | None) -> Path | None:
    """`synthetic` (and None, the default) -> the shipped file, `scratch` -> None (random weights), else an ASDA
    checkpoint folder or a `.safetensors` file of the same model."""
    value = value or DEFAULT_TINY_INIT
    if value == "scratch":
        return None
    path = SHIPPED_TINY_INIT if value == "synthetic" else Path(value)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        hint = (
            "the package was installed without its data files; reinstall it, or make the file with "
            "`python scripts/run_ris.py && python scripts/make_tiny_init.py`"
            if value == "synthetic"
            else "give a checkpoint folder with model.safetensors or a .safetensors file"
        )
        raise FileNotFoundError(
            f"--tiny_init {value}: {path} does not exist ({hint}); `--tiny_init scratch` starts from random weights."
        )
    return path


def load_tiny_init(model: torch.nn.Module, path: Path) -> dict:
    """Copy every tensor of `path` whose name and shape match the model; the rest keeps its random init.

    Returns the names loaded, those left at their init because the file lacks them (e.g. a no-target head),
    those whose shape differs (e.g. another image size), and the file's tensors the model has no place for.
    """
    state = model.state_dict()
    report = {"loaded": [], "not_in_file": [], "shape_differs": [], "not_in_model": []}
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"--tiny_init {path}: the weights cannot be read ({err}).") from err
    with handle, torch.no_grad():
        names = set(handle.keys())
        for name, target in state.items():
            if name not in names:
                report["not_in_file"].append(name)
                continue
            tensor = handle.get_tensor(name)
            if tuple(tensor.shape) != tuple(target.shape):
                report["shape_differs"].append(f"{name} {tuple(tensor.shape)} vs {tuple(target.shape)}")
                continue
            target.copy_(tensor.to(target.dtype))
            report["loaded"].append(name)
        report["not_in_model"] = sorted(names - set(state))
    if not report["loaded"]:
        raise ValueError(f"--tiny_init {path}: no tensor matches this model; is it an ASDA checkpoint?")
    log = logger.warning if report["shape_differs"] else logger.info
    log(
        f"Tiny preset initialised from {path}: {len(report['loaded'])} tensors loaded, "
        f"{len(report['not_in_file'])} new (random init), {len(report['shape_differs'])} of another shape kept "
        "random" + (f": {report['shape_differs']}" if report["shape_differs"] else "")
    )
    return report


def describe_tiny_init(path: Path) -> str:
    """One line for the model card: where the starting weights came from (the file's own metadata)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    made_by = metadata.get("made_by", "")
    return f"{path.name}" + (f", written from the checkpoint of `{made_by}`" if made_by else "")


def save_tiny_init(checkpoint: str, output: str | os.PathLike, dtype: torch.dtype = torch.float16) -> dict:
    """Write a checkpoint's weights as a tiny-init file (half precision: the file ships in the repository),
    with the checkpoint's training command and test numbers as metadata. Returns the metadata."""
    weights = load_file(os.path.join(checkpoint, "model.safetensors"))
    weights = {name: (t.to(dtype) if t.is_floating_point() else t).contiguous() for name, t in weights.items()}
    metadata = {"source": os.path.basename(os.path.normpath(checkpoint))}
    results = Path(checkpoint) / "all_results.json"
    if results.is_file():
        values = json.loads(results.read_text())
        metadata["results"] = json.dumps({k: v for k, v in values.items() if k.endswith(("_mIoU", "_oIoU"))})
    command = Path(checkpoint) / "model_card.json"
    if command.is_file():
        card = json.loads(command.read_text())
        if card.get("command"):
            metadata["made_by"] = card["command"].strip()
    save_file(weights, str(output), metadata=metadata)
    return metadata
