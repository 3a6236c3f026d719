"""Loading a trained ASDA checkpoint (a local folder or a Hub repo) for inference scripts, with its processor."""

import argparse
import logging
import os
import sys

import torch

from ..modeling_asda import ASDAForReferringSegmentation
from ..processing_asda import ASDAProcessor

logger = logging.getLogger(__name__)


def setup_script_logging() -> None:
    """Our messages at INFO; transformers' only when they are errors, and no download progress bars."""
    from transformers.utils import logging as hf_logging

    logging.basicConfig(format="%(levelname)s - %(message)s", level=logging.INFO)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def resolve_device(device: str | None) -> torch.device:
    """`None`/"auto" -> cuda when available, else cpu; anything else must name an available device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"--device {device!r} is not a torch device name ({err})") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine; use --device cpu")
    return resolved


def load_checkpoint(name_or_path: str, revision: str | None = None, **config_overrides):
    """The model and processor of a checkpoint with this package's classes (none of the checkpoint's code runs).

    `config_overrides` go to the model's config. The processor is the one saved with the checkpoint; a
    checkpoint without one, or with one of another image size, gets a processor built from the model's config.
    """
    if not os.path.isdir(name_or_path) and os.path.exists(name_or_path):
        raise ValueError(f"{name_or_path!r} is a file; pass the checkpoint folder (with config.json) or a Hub id")
    model = ASDAForReferringSegmentation.from_pretrained(name_or_path, revision=revision, **config_overrides)
    config = model.config
    try:
        processor = ASDAProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError):
        logger.warning(f"{name_or_path}: no processor saved with the checkpoint; building one from its config.")
        processor = None
    if processor is not None and processor.image_processor.image_size != config.image_size:
        logger.warning(
            f"{name_or_path}: the saved processor letterboxes to {processor.image_processor.image_size} but the model "
            f"takes {config.image_size}; using a processor built from the model config."
        )
        processor = None
    if processor is None:
        processor = ASDAProcessor.from_model_config(config)
    return model, processor


@torch.no_grad()
def batched_outputs(model, processor, dataset, batch_size: int = 32, **model_kwargs):
    """Yields (rows, original sizes, model output) for consecutive batches of `dataset`, the model in eval mode."""
    if len(dataset) == 0:
        raise ValueError("the evaluation split is empty")
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        images = list(rows["image"])
        encoded = processor(images=images, text=list(rows["sentence"]))
        inputs = {k: encoded[k].to(device) for k in ("pixel_values", "input_ids", "attention_mask")}
        yield rows, [(image.height, image.width) for image in images], model(**inputs, **model_kwargs)


def load_model_and_processor(name_or_path: str, revision: str | None = None, device=None):
    """`load_checkpoint`, with the model moved to `device` (see `resolve_device`) and put in eval mode."""
    model, processor = load_checkpoint(name_or_path, revision=revision)
    model.to(device if isinstance(device, torch.device) else resolve_device(device)).eval()
    return model, processor


def load_split(
    dataset_name: str,
    split: str,
    dataset_config=None,
    split_by=None,
    image_root=None,
    max_samples: int | None = None,
    synthetic_num: int = 1000,
    synthetic_seed: int = 0,
):
    """One split of canonical rows (as run_ris.py evaluates it), optionally its first `max_samples` rows.

    For "synthetic", the split is generated with `synthetic_num` rows and `synthetic_seed`, which are
    run_ris.py's --synthetic_num_eval and --synthetic_seed: the same rows its evaluation used.
    """
    from ..data.loading import load_referring_dataset

    if dataset_name == "synthetic":
        sizes = {"train": "num_train", "val": "num_val", "test": "num_test"}
        if split not in sizes:
            raise ValueError(f"the synthetic data has splits {list(sizes)}, not {split!r}")
        counts = {name: 0 for name in sizes.values()}
        counts[sizes[split]] = synthetic_num
        if dataset_config == "generalized":  # run_ris.py --dataset_config generalized: the same rows
            from ..data.synthetic import GENERALIZED

            counts.update(GENERALIZED)
        dataset = load_referring_dataset("synthetic", seed=synthetic_seed, **counts)
    else:
        dataset = load_referring_dataset(
            dataset_name, dataset_config=dataset_config, split_by=split_by, image_root=image_root, splits=[split]
        )
    if split not in dataset:
        raise ValueError(f"{dataset_name}: no split {split!r}; available: {sorted(dataset)}")
    rows = dataset[split]
    if max_samples is not None:
        rows = rows.select(range(min(max_samples, len(rows))))
    return rows


def add_split_arguments(parser, dataset_name: str | None = "synthetic", dataset_config: str | None = None) -> None:
    """The arguments of `load_split_from_args` on `parser` (or an argument group): which data set and split."""
    parser.add_argument(
        "--dataset_name", default=dataset_name, help="'synthetic', a Hub id or a local folder (as run_ris.py)"
    )
    parser.add_argument("--dataset_config", default=dataset_config)
    parser.add_argument("--split_by", default=None)
    parser.add_argument("--image_root", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--synthetic_num_eval", type=int, default=1000, help="as run_ris.py: rows of the synthetic split"
    )
    parser.add_argument("--synthetic_seed", type=int, default=0)


def load_split_from_args(args, max_samples: int | None = None, synthetic_num: int | None = None):
    """`load_split` with the arguments of `add_split_arguments`; `synthetic_num` overrides --synthetic_num_eval."""
    return load_split(
        args.dataset_name,
        args.split,
        args.dataset_config,
        args.split_by,
        args.image_root,
        max_samples=max_samples,
        synthetic_num=args.synthetic_num_eval if synthetic_num is None else synthetic_num,
        synthetic_seed=args.synthetic_seed,
    )


def add_checkpoint_split_arguments(parser, dataset_config: str | None = None) -> None:
    """Arguments of the scripts that run one checkpoint over one split: --model, --revision, --device,
    --max_samples, --batch_size and those of `add_split_arguments`."""
    parser.add_argument("--model", required=True, help="ASDA checkpoint folder or Hub repo id")
    parser.add_argument("--revision", default=None)
    add_split_arguments(parser, dataset_config=dataset_config)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None)


def checkpoint_script_parser(description: str, dataset_config: str | None = None):
    """The parser of a script that runs one checkpoint over one split (its docstring as the help text)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_split_arguments(parser, dataset_config=dataset_config)
    return parser


def parse_and_load(parser, argv=None, check=None):
    """(args, model, processor, rows): parse `argv` (default: the command line), run `check(args, parser)` before
    anything is loaded, set up logging, then load the checkpoint and the split."""
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if check is not None:
        check(args, parser)
    setup_script_logging()
    return (args, *load_checkpoint_and_split(args))


def load_checkpoint_and_split(args):
    """(model in eval mode on its device, processor, rows) for the arguments of `add_checkpoint_split_arguments`."""
    model, processor = load_model_and_processor(args.model, args.revision, resolve_device(args.device))
    return model, processor, load_split_from_args(args, max_samples=args.max_samples)
