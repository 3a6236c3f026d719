#!/usr/bin/env python
"""Train and evaluate ASDA on referring image segmentation with the transformers `Trainer`.

    python scripts/run_ris.py                                   # built-in demo: tiny model, synthetic data
    python scripts/run_ris.py configs/paper_refcoco.json        # arguments from a JSON file
    python scripts/run_ris.py configs/demo_synthetic.json --synthetic_num_train 8000   # a file, then flags on top
    accelerate launch scripts/run_ris.py --dataset_name ... --do_train --do_eval ...

Run `python scripts/run_ris.py --help` for every argument (model, data, and all TrainingArguments).
"""

import json
import logging
import os
import sys
import time

import datasets
import transformers
from transformers import HfArgumentParser, set_seed

from modeling_asda.data.transforms import collate_ris
from modeling_asda.training.arguments import DataArguments, ModelArguments, RISTrainingArguments
from modeling_asda.training.experiment import (
    build_model_and_processor,
    configure_no_target_head,
    evaluate_splits,
    finish_run,
    load_splits,
    make_trainer,
)
from modeling_asda.training.launch import prepare_distributed
from modeling_asda.training.recipes import apply_preset_defaults, explicit_keys
from modeling_asda.training.refiner_tail import train_refiner_tail

logger = logging.getLogger(__name__)

# `python scripts/run_ris.py` with no arguments runs this file: tiny preset on the synthetic data.
DEMO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo_synthetic.json")


def parse_args(argv):
    """(model_args, data_args, training_args, the argument names the user gave)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, RISTrainingArguments))
    if not argv:
        logger.warning(f"No arguments: running the built-in demo ({DEMO_CONFIG}).")
        with open(DEMO_CONFIG) as handle:
            return (*parser.parse_json_file(DEMO_CONFIG), explicit_keys([], json.load(handle)))
    if argv[0].endswith(".json"):
        with open(argv[0]) as handle:
            values = json.load(handle)
        if len(argv) == 1:
            return (*parser.parse_json_file(os.path.abspath(argv[0])), explicit_keys([], values))
        # `run_ris.py config.json --flag value ...`: the file's values, then the flags on top of them.
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"{argv[0]}: unknown argument(s) {unknown}; see `python scripts/run_ris.py --help`.")
        parser.set_defaults(**values)
        return (*parser.parse_args_into_dataclasses(args=argv[1:]), explicit_keys(argv[1:], values))
    return (*parser.parse_args_into_dataclasses(args=argv), explicit_keys(argv))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    relaunched = prepare_distributed(os.path.abspath(__file__), argv)
    if relaunched is not None:  # the N worker processes did the run
        raise SystemExit(relaunched)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    try:
        model_args, data_args, training_args, explicit = parse_args(argv)
        apply_preset_defaults(model_args, data_args, training_args, explicit)
    except ValueError as err:  # argument checks (ours and TrainingArguments'): the message is the answer
        raise SystemExit(f"run_ris.py: {err}") from None
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    if not (training_args.do_train or training_args.do_eval):
        logger.info("Neither --do_train nor --do_eval given: training, then evaluating.")
        training_args.do_train = training_args.do_eval = True
    start = time.time()
    set_seed(training_args.seed)

    try:  # data and checkpoint errors name the file and what to do; a traceback would only hide that
        model, processor = build_model_and_processor(model_args, data_args)
        splits = load_splits(data_args, training_args, processor)
    except (ValueError, OSError) as err:
        raise SystemExit(f"run_ris.py: {err}") from None
    if training_args.do_train:
        configure_no_target_head(model, model_args.no_target_head, splits.train_no_target_rows)
    trainer = make_trainer(model, processor, training_args, splits)

    train_metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        train_metrics = dict(result.metrics, train_samples=len(splits.train))
        if training_args.refiner_tail_steps:
            train_metrics.update(train_refiner_tail(model, training_args, splits.train, collate_ris))
        trainer.save_model()  # weights, config, code (pipeline included) and processor
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()

    eval_metrics, by_type = {}, {}
    if training_args.do_eval:
        eval_metrics, by_type = evaluate_splits(trainer, splits.eval, splits.raw_eval)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        finish_run(
            trainer,
            model_args,
            data_args,
            training_args,
            train_metrics,
            eval_metrics,
            splits.raw_eval,
            wall_seconds=time.time() - start,
            argv=argv,
            by_type=by_type,
        )
        print(json.dumps({"output_dir": training_args.output_dir, "seconds": round(time.time() - start, 1)}))
    # Close the process group on every rank once the main one is done: a rank that exits with the gloo group
    # open aborts at interpreter shutdown ("terminate called without an active exception"), failing the launch.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
