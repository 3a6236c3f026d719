"""The steps of scripts/run_ris.py: build model + processor, load splits, make the Trainer, evaluate, report."""

import json
import logging
import os
from functools import partial
from typing import NamedTuple

import numpy as np

from ..benchmark.machine import machine_summary
from ..configuration_asda import ASDAConfig
from ..data.loading import load_referring_dataset
from ..data.refer import find_refer_files, is_refer_folder
from ..data.transforms import AugmentationConfig, RISTransform, collate_ris
from ..evaluation.expression_types import (
    UNLEARNED_MARGIN,
    format_by_type_table,
    metrics_by_expression_type,
    unlearned_word_types,
)
from ..evaluation.inference import load_checkpoint
from ..evaluation.metrics import (
    GENERALIZED_KEYS,
    GENERALIZED_TABLE_METRICS,
    METRIC_KEYS,
    MODEL_ROW,
    TABLE_METRICS,
    format_results_table,
)
from ..evaluation.model_card import push_folder_to_hub, write_model_card
from ..modeling_asda import ASDAForReferringSegmentation
from ..processing_asda import ASDAProcessor
from .arguments import parse_config_overrides
from .tiny_init import load_tiny_init, resolve_tiny_init
from .trainer import (
    EpochToTransformCallback,
    LossPlateauCallback,
    RISTrainer,
    SelectionExplorationCallback,
    compute_ris_metrics,
)

logger = logging.getLogger(__name__)

SYNTHETIC_CONFIGS = (None, "", "default", "generalized")


def preset_config(preset: str, overrides: dict) -> ASDAConfig:
    """A preset with overrides; dotted keys reach the CLIP sub-configs (e.g. vision_config.patch_size=8)."""
    nested = {key: value for key, value in overrides.items() if "." in key}
    config = getattr(ASDAConfig, preset)(**{key: value for key, value in overrides.items() if "." not in key})
    if not nested:
        return config
    values = config.to_dict()
    for key, value in nested.items():
        section, name = key.split(".", 1)
        if section not in ("vision_config", "text_config"):
            raise ValueError(f"--config_overrides {key}: only vision_config.* and text_config.* can be nested")
        values[section][name] = value
    values.pop("model_type", None)
    return ASDAConfig(**values)


def build_model_and_processor(model_args, data_args):
    """An ASDA checkpoint, or CLIP weights + ASDA heads, or a random-init preset; with the matching processor."""
    overrides = parse_config_overrides(model_args.config_overrides)
    if data_args.max_text_length is not None:
        overrides["max_text_length"] = data_args.max_text_length
    elif data_args.dataset_config == "refcocog" and not model_args.model_name_or_path:
        overrides.setdefault("max_text_length", 22)  # paper: 22 tokens for G-Ref, 17 otherwise

    if model_args.model_name_or_path:
        model, processor = load_checkpoint(model_args.model_name_or_path, model_args.revision, **overrides)
    elif model_args.clip_model_name_or_path:
        preset = getattr(ASDAConfig, model_args.config_preset)()
        overrides.setdefault("image_size", preset.image_size)
        overrides.setdefault("max_text_length", preset.max_text_length)
        model = ASDAForReferringSegmentation.from_clip(model_args.clip_model_name_or_path, **overrides)
        processor = None
    else:
        if model_args.config_preset not in ("tiny", "vit_b16"):
            raise ValueError(f"--config_preset must be tiny or vit_b16, got {model_args.config_preset!r}")
        if model_args.config_preset == "vit_b16" and getattr(data_args, "dataset_name", None) == "synthetic":
            logger.warning(
                "Training the paper-width vit_b16 preset from random weights on the built-in data (the argument "
                "defaults). The demo is `python scripts/run_ris.py` with no arguments, or `python scripts/run_ris.py "
                "configs/demo_synthetic.json --flag ...` to change it; or pass --config_preset tiny."
            )
        model = ASDAForReferringSegmentation(preset_config(model_args.config_preset, overrides))
        init = resolve_tiny_init(model_args.tiny_init) if model_args.config_preset == "tiny" else None
        if init is not None:
            load_tiny_init(model, init)
        processor = None
    if model_args.tiny_init and (
        model_args.config_preset != "tiny" or model_args.model_name_or_path or model_args.clip_model_name_or_path
    ):
        logger.warning(
            f"--tiny_init {model_args.tiny_init} is ignored: it sets the starting weights of --config_preset tiny "
            "without --model_name_or_path or --clip_model_name_or_path."
        )
    config = model.config
    if processor is None or processor.image_processor.image_size != config.image_size:
        processor = ASDAProcessor(image_size=config.image_size, max_length=config.max_text_length)
    logger.info(
        f"ASDA: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, image {config.image_size}, "
        f"{config.max_text_length} tokens, selection={config.feature_selection}/{config.selection}, "
        f"fusion={config.fusion}, aligner={config.aligner}"
    )
    return model, processor


class Splits(NamedTuple):
    train: object  # Dataset with the training transform, or None
    train_transform: object  # its RISTransform (the epoch callback advances it)
    eval: dict  # split -> Dataset with the evaluation transform and a row_index column
    raw_eval: dict  # split -> the same rows without transform (baselines, reports)
    train_no_target_rows: int = 0  # training rows whose expression names nothing


def synthetic_kwargs(data_args) -> dict:
    """Generator settings of `--dataset_name synthetic`: `--dataset_config generalized` adds no-target and
    multi-target expressions in about gRefCOCO's proportions; `--synthetic_overrides` go on top."""
    from ..data.synthetic import GENERALIZED

    if data_args.dataset_config not in SYNTHETIC_CONFIGS:
        raise ValueError(
            f"--dataset_config {data_args.dataset_config!r} for the synthetic data: use 'generalized' (expressions "
            "that name nothing or several objects) or leave it out."
        )
    kwargs = dict(GENERALIZED) if data_args.dataset_config == "generalized" else {}
    kwargs.update(parse_config_overrides(data_args.synthetic_overrides))
    return kwargs


def default_eval_splits(data_args, available) -> list[str]:
    """--eval_splits, else every split of the data set except the training one (synthetic: val)."""
    if data_args.eval_splits:
        return data_args.eval_split_list
    if data_args.dataset_name == "synthetic":
        return ["val"]
    return [split for split in available if split != data_args.train_split]


def configure_no_target_head(model, requested, train_no_target_rows: int) -> bool:
    """Give the model a no-target head when asked (`requested` True), or when `requested` is None and the
    training data has no-target rows; `requested` False never adds one. Returns whether the model has one."""
    has_head = bool(getattr(model.config, "no_target_head", False))
    wanted = requested if requested is not None else (has_head or train_no_target_rows > 0)
    if wanted and not has_head:
        model.add_no_target_head()
        logger.info(
            f"No-target head added ({train_no_target_rows} training rows name nothing); it is trained with BCE "
            "next to the mask loss and saved with the checkpoint (config.no_target_head=True)."
        )
    elif has_head and not wanted:
        raise ValueError("--no_target_head false, but the checkpoint has a no-target head; it cannot be removed.")
    elif not wanted and train_no_target_rows:
        logger.warning(
            f"--no_target_head false: {train_no_target_rows} no-target training rows teach the mask alone to be empty."
        )
    return bool(wanted)


def load_splits(data_args, training_args, processor) -> Splits:
    """Train split with the training transform; eval splits with the evaluation transform (+ raw copies)."""
    wanted = []
    if training_args.do_train:
        wanted.append(data_args.train_split)
    if training_args.do_eval and data_args.eval_splits:
        wanted += data_args.eval_split_list
    if data_args.dataset_name == "synthetic":
        dataset = load_referring_dataset(
            "synthetic",
            num_train=data_args.synthetic_num_train if training_args.do_train else 0,
            num_val=data_args.synthetic_num_eval,
            num_test=data_args.synthetic_num_eval,
            seed=data_args.synthetic_seed,
            **synthetic_kwargs(data_args),
        )
    else:
        dataset = load_referring_dataset(
            data_args.dataset_name,
            dataset_config=data_args.dataset_config,
            split_by=data_args.split_by,
            image_root=data_args.image_root,
            # Without --eval_splits every split is loaded, and all but the training split are evaluated.
            splits=wanted if not training_args.do_eval or data_args.eval_splits else None,
            progress=True,
            rebuild=data_args.rebuild,
        )
    eval_splits = default_eval_splits(data_args, list(dataset)) if training_args.do_eval else []
    if training_args.do_eval and not data_args.eval_splits:
        logger.info(f"Evaluating the splits {eval_splits} (pass --eval_splits to choose).")
        data_args.eval_splits = ",".join(eval_splits)  # what the model card and the report say
    missing = [split for split in wanted + eval_splits if split not in dataset]
    if missing:
        raise ValueError(f"{data_args.dataset_name}: no split(s) {missing}; available: {sorted(dataset)}")
    for split in wanted:
        check_not_empty(dataset[split], split, data_args)

    train_dataset = train_transform = None
    train_no_target_rows = 0
    if training_args.do_train:
        train_dataset = dataset[data_args.train_split]
        if data_args.max_train_samples is not None:
            if data_args.max_train_samples < 1:
                raise ValueError(f"--max_train_samples must be at least 1, got {data_args.max_train_samples}")
            train_dataset = train_dataset.select(range(min(data_args.max_train_samples, len(train_dataset))))
        train_no_target_rows = int(sum(train_dataset["no_target"]))
        augmentation = AugmentationConfig(data_args.hflip_prob, data_args.color_jitter, data_args.random_affine)
        train_transform = RISTransform(processor, train=True, augmentation=augmentation, seed=training_args.seed)
        train_dataset = train_dataset.with_transform(train_transform)

    eval_datasets, raw_eval = {}, {}
    if training_args.do_eval:
        for split in eval_splits:
            raw = dataset[split]
            if data_args.max_eval_samples is not None:
                if data_args.max_eval_samples < 1:
                    raise ValueError(f"--max_eval_samples must be at least 1, got {data_args.max_eval_samples}")
                raw = raw.select(range(min(data_args.max_eval_samples, len(raw))))
            raw_eval[split] = raw
            indexed = raw.add_column("row_index", list(range(len(raw))))
            eval_datasets[split] = indexed.with_transform(RISTransform(processor, train=False))
    return Splits(train_dataset, train_transform, eval_datasets, raw_eval, train_no_target_rows)


def check_not_empty(dataset, split, data_args):
    """A split without rows stops the run: training would fail deep in torch, evaluation would report nothing."""
    if len(dataset):
        return
    role = "training" if split == data_args.train_split else "evaluation"
    raise ValueError(
        f"The {role} split '{split}' of {data_args.dataset_name} has no rows. If the conversion dropped them, the "
        "warning above lists why (missing images, bad masks, ...); fix the data, or choose other splits with "
        "--train_split / --eval_splits."
    )


def candidate_layers(config) -> dict:
    """The adaptive selection's candidate layers, for the per-split selection shares of the evaluation."""
    if config.feature_selection != "adaptive":
        return {}
    return {"low_layers": tuple(config.low_candidate_layers), "mid_layers": tuple(config.mid_candidate_layers)}


def make_trainer(model, processor, training_args, splits: Splits):
    if training_args.scale_lr:
        total = (
            training_args.per_device_train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps
        )
        training_args.learning_rate *= total / 16
        logger.info(f"--scale_lr: learning rate {training_args.learning_rate:g} for {total} images per step")
    if training_args.ddp_find_unused_parameters is None:
        # Only the published hard argmax leaves parameters (the selector) without gradient.
        config = model.config
        training_args.ddp_find_unused_parameters = (
            config.feature_selection == "adaptive" and config.selection == "hard"
        )
    # The final upload is ours (our model card); Trainer's own push would replace it with its generic card.
    training_args.asda_push_to_hub = training_args.push_to_hub
    training_args.push_to_hub = False
    callbacks = [EpochToTransformCallback(splits.train_transform)] if splits.train is not None else []
    if training_args.selection_gumbel_scale > 0:
        callbacks.append(
            SelectionExplorationCallback(
                training_args.selection_gumbel_scale, training_args.selection_exploration_fraction
            )
        )
    if training_args.plateau_check_step > 0:
        callbacks.append(LossPlateauCallback(training_args.plateau_check_step, training_args.plateau_check_loss))
    return RISTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.train,
        eval_dataset=splits.eval or None,  # a dict: --eval_strategy evaluates every split as eval_<split>_*
        data_collator=collate_ris,
        processing_class=processor,
        compute_metrics=partial(compute_ris_metrics, **candidate_layers(model.config)),
        callbacks=callbacks,
        no_target_threshold=getattr(model.config, "no_target_threshold", 0.5),
    )


def evaluate_splits(trainer, eval_datasets, raw_eval=None) -> tuple[dict, dict]:
    """(metrics of every split, {split: results by expression type}); the latter needs the raw rows' sentences."""
    metrics, by_type = {}, {}
    for split, dataset in eval_datasets.items():
        # predict() is evaluate() that also returns the per-sample counts the by-type results need.
        output = trainer.predict(dataset, metric_key_prefix=f"eval_{split}")
        trainer.log(output.metrics)
        metrics.update(output.metrics)
        if raw_eval is not None and output.predictions is not None:
            counts = np.asarray(output.predictions)[np.argsort(np.asarray(output.label_ids).reshape(-1))]
            by_type[split] = metrics_by_expression_type(raw_eval[split]["sentence"], counts[:, 0], counts[:, 1])
    return metrics, by_type


def split_results(eval_metrics: dict, splits) -> dict:
    """{'eval_val_mIoU': x, ...} -> {'val': {'mIoU': x, ...}}."""
    return {
        split: {
            name: eval_metrics[f"eval_{split}_{name}"]
            for name in METRIC_KEYS + GENERALIZED_KEYS
            if f"eval_{split}_{name}" in eval_metrics
        }
        for split in splits
    }


def grefcoco_instances(data_args):
    """instances.json of a gRefCOCO-layout --dataset_name, or None for any other source."""
    from ..data.grefcoco import find_grefcoco_files
    from ..data.loading import detect_format

    if not os.path.exists(data_args.dataset_name):
        return None
    detected = detect_format(data_args.dataset_name, data_args.dataset_config)
    if detected.kind != "grefcoco":
        return None
    return find_grefcoco_files(detected.path, data_args.split_by)[1]


def _unlearned_words_warnings(by_type, random_object: dict) -> list[str]:
    """One line per split whose position / relation expressions score like a random object of the scene."""
    blind = {split: metrics["mIoU"] for split, metrics in random_object.items()}
    lines = []
    for split, groups in unlearned_word_types(by_type or {}, blind).items():
        scores = ", ".join(f"{group} {100 * by_type[split][group]['mIoU']:.1f}" for group in groups)
        lines.append(
            f"{split}: {scores} mIoU, less than {100 * UNLEARNED_MARGIN:.0f} points above a random object of the scene "
            f"({100 * blind[split]:.1f}): "
            "the run did not learn these words. A longer run or another --seed usually does (README, 'The demo run')."
        )
    return lines


def finish_run(
    trainer,
    model_args,
    data_args,
    training_args,
    train_metrics,
    eval_metrics,
    raw_eval,
    wall_seconds,
    argv,
    by_type=None,
):
    # Runs on the main process only.
    """Print the paper-style table (with baselines on synthetic data), write results.md and the model card."""
    output_dir = training_args.output_dir
    from ..evaluation.baselines import (
        RANDOM_OBJECT,
        annotation_baselines,
        is_generalized,
        language_blind_baselines,
        no_target_baseline,
        synthetic_generalized_baselines,
    )

    rows = {}
    generalized = any(is_generalized(dataset) for dataset in raw_eval.values())
    if eval_metrics:
        rows[MODEL_ROW] = split_results(eval_metrics, list(raw_eval))
        for split, dataset in raw_eval.items():
            if data_args.dataset_name == "synthetic" and data_args.baselines:
                method = synthetic_generalized_baselines if generalized else language_blind_baselines
                baselines = method(dataset, seed=training_args.seed)
            elif generalized and data_args.baselines:
                instances = grefcoco_instances(data_args)
                if instances is not None:  # the objects of each image come from the annotations
                    baselines = annotation_baselines(dataset, instances, seed=training_args.seed)
                else:  # a prepared copy: only the masks are known, which say which rows are empty
                    baselines = no_target_baseline(dataset)
            elif (
                data_args.baselines
                and os.path.isdir(data_args.dataset_name)
                and is_refer_folder(data_args.dataset_name)
            ):
                from ..evaluation.refer_baselines import refer_language_blind_baselines

                _, instances = find_refer_files(data_args.dataset_name, data_args.dataset_config, data_args.split_by)
                baselines = refer_language_blind_baselines(dataset, instances, training_args.seed)
            else:
                baselines = {}
            for name, metrics in baselines.items():
                rows.setdefault(name, {})[split] = metrics
    table_metrics = GENERALIZED_TABLE_METRICS if generalized else TABLE_METRICS
    table = format_results_table(rows, metrics=table_metrics) if rows else ""
    summary = {
        "wall_seconds": round(wall_seconds, 1),
        "train_runtime": train_metrics.get("train_runtime"),
        "train_samples_per_second": train_metrics.get("train_samples_per_second"),
        "command": "python scripts/run_ris.py " + " ".join(argv),
        "machine": machine_summary(str(training_args.device)),
    }
    type_table = format_by_type_table(by_type) if by_type else ""
    if type_table:
        summary["by_expression_type"] = type_table
    alerts = _unlearned_words_warnings(by_type, rows.get(RANDOM_OBJECT, {}))
    if table:
        print("\n" + table + "\n")
    if type_table:
        print("By expression type (values x100):\n\n" + type_table + "\n")
    for alert in alerts:
        print("WARNING: " + alert)
    print(
        f"Total wall time {wall_seconds / 60:.1f} min (training {summary['train_runtime'] or 0:.0f} s) on "
        f"{summary['machine']}."
    )
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.md"), "w") as handle:
        handle.write(
            f"# Results\n\n{table}\n\nValues x100. {json.dumps({k: v for k, v in summary.items() if k != 'by_expression_type'})}\n"
        )
        if type_table:
            handle.write(f"\n## By expression type\n\n{type_table}\n")
        if alerts:
            handle.write("\n## Warnings\n\n" + "".join(f"- {alert}\n" for alert in alerts))
    if by_type:
        with open(os.path.join(output_dir, "by_expression_type.json"), "w") as handle:
            json.dump(by_type, handle, indent=2)
    with open(os.path.join(output_dir, "baselines.json"), "w") as handle:
        json.dump({name: value for name, value in rows.items() if name != MODEL_ROW}, handle, indent=2)

    write_model_card(trainer.model, output_dir, model_args, data_args, training_args, rows, summary)
    if getattr(training_args, "asda_push_to_hub", False):
        push_folder_to_hub(output_dir, training_args)
