"""scripts/run_ris.py end to end: outputs, evaluation protocol, recipe pieces, multi-process and resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import fixtures_data as fx
import numpy as np
import pytest
import torch
from asda_checkpoint import script_module
from transformers.trainer_utils import SchedulerType

from modeling_asda.benchmark.machine import cpu_model
from modeling_asda.data.transforms import AugmentationConfig, RISTransform, augment, swap_left_right
from modeling_asda.evaluation.expression_types import expression_groups
from modeling_asda.training.arguments import parse_config_overrides
from modeling_asda.training.recipes import TINY_FROM_SCRATCH, apply_preset_defaults
from modeling_asda.training.trainer import milestone_steps, multistep_factor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_ris.py")
TINY_RUN = [
    "--config_preset",
    "tiny",
    "--dataset_name",
    "synthetic",
    "--synthetic_seed",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "4",
    "--learning_rate",
    "1e-3",
    "--lr_schedule",
    "hf",
    "--logging_steps",
    "1",
    "--report_to",
    "none",
]


def run_script(args, timeout=600, launcher=None):
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false"
    )
    command = (launcher or [sys.executable]) + [SCRIPT] + [str(a) for a in args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "asda"
    result = run_script(
        TINY_RUN
        + [
            "--synthetic_num_train",
            "64",
            "--synthetic_num_eval",
            "19",
            "--eval_splits",
            "val,test",
            "--num_train_epochs",
            "1",
            "--do_train",
            "--do_eval",
            "--save_strategy",
            "no",
            "--plateau_check_step",
            "5",
            "--plateau_check_loss",
            "0.001",  # below any loss of 8 steps: the check must warn
            "--output_dir",
            out,
        ]
    )
    (out.parent / "stderr.txt").write_text(result.stderr)
    return out, result.stdout


def test_run_writes_hub_ready_folder_results_and_table(trained_run):
    out, stdout = trained_run
    files = set(os.listdir(out))
    for name in (
        "model.safetensors",
        "config.json",
        "modeling_asda.py",
        "configuration_asda.py",
        "processing_asda.py",
        "image_processing_asda.py",
        "processor_config.json",
        "README.md",
        "all_results.json",
        "results.md",
    ):
        assert name in files, name
    results = read_json(out / "all_results.json")
    for split in ("val", "test"):
        for metric in ("mIoU", "oIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9"):
            value = results[f"eval_{split}_{metric}"]
            assert 0.0 <= value <= 1.0
        assert results[f"eval_{split}_num_samples"] == 19
        # Per-split selection shares over the tiny preset's candidates: whole samples out of 19, summing to 1.
        for level, layers in (("low", (2, 3, 4)), ("mid", (5, 6, 7))):
            shares = [results[f"eval_{split}_selection_{level}_L{layer}"] for layer in layers]
            assert sum(shares) == pytest.approx(1.0)
            assert all(abs(share * 19 - round(share * 19)) < 1e-6 for share in shares)
    # Every training log (logging_steps 1, batch 8) carries the step's selection shares and mean entropy.
    train_logs = [entry for entry in read_json(out / "trainer_state.json")["log_history"] if "loss" in entry]
    assert len(train_logs) == 8
    for entry in train_logs:
        for level, layers in (("low", (2, 3, 4)), ("mid", (5, 6, 7))):
            shares = [entry[f"selection_{level}_L{layer}"] for layer in layers]
            assert sum(shares) == pytest.approx(1.0, abs=1e-3)
            assert all(abs(share * 8 - round(share * 8)) < 1e-3 for share in shares)
            assert 0.0 < entry[f"selection_{level}_entropy"] <= 1.0
    # The paper-style table is printed with the model row and both language-blind baselines.
    assert "| ASDA (this run) |" in stdout
    assert "| baseline: whole image |" in stdout and "| baseline: random object |" in stdout
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "mIoU" in card
    for text in (stdout, card, (out / "results.md").read_text()):
        assert "| with a shape word |" in text and "| no shape word |" in text
    # Which machine the time (and the trajectory) belongs to: CPU model, vector instructions, thread count.
    machine = f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), torch threads: 1"  # OMP_NUM_THREADS=1
    for text in (stdout, card, (out / "results.md").read_text()):
        assert machine in text, machine
    # The loss check warned once, at the step asked for, while the run went on to its 8 steps.
    stderr = (out.parent / "stderr.txt").read_text()
    assert stderr.count("(--plateau_check_loss)") == 1 and " at step 5 is above 0.001 " in stderr


def test_refer_folder_trains_and_evaluates_every_requested_split(tmp_path):
    """The real-data path: REFER pickles + instances.json + a COCO image folder, straight into run_ris.py."""
    root, image_root = fx.write_refer(str(tmp_path / "refer"))
    out = tmp_path / "out"
    run_script([
        "--config_preset", "tiny", "--dataset_name", root, "--dataset_config", "refcoco", "--split_by", "unc",
        "--image_root", image_root, "--eval_splits", "val,testA,testB", "--do_train", "--do_eval",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "2", "--save_strategy", "no",
        "--report_to", "none", "--output_dir", out,
    ])  # fmt: skip
    rows_per_split = {}
    for row in fx.expected_rows().values():
        rows_per_split[row["split"]] = rows_per_split.get(row["split"], 0) + 1
    results = read_json(out / "all_results.json")
    assert results["train_samples"] == rows_per_split["train"]
    for split in ("val", "testA", "testB"):
        assert results[f"eval_{split}_num_samples"] == rows_per_split[split], split
        assert 0.0 <= results[f"eval_{split}_mIoU"] <= 1.0
    # 2 training sentences, batch 2, 2 epochs: 2 optimizer steps.
    assert read_json(out / "trainer_state.json")["global_step"] == 2
    card = (out / "README.md").read_text()
    assert "split: testB" in card and "refcoco" in card


def test_reported_metrics_equal_an_independent_evaluation_at_original_size(trained_run):
    """Recompute test-split mIoU/oIoU from the saved checkpoint with numpy, without the Trainer."""
    from modeling_asda import ASDAForReferringSegmentation, ASDAProcessor
    from modeling_asda.data.synthetic import build_synthetic_dataset

    out, _ = trained_run
    model = ASDAForReferringSegmentation.from_pretrained(out).eval()
    processor = ASDAProcessor.from_pretrained(out)
    rows = build_synthetic_dataset(num_train=0, num_val=19, num_test=19, seed=3)["test"]
    ious, inters, unions = [], 0, 0
    for row in rows:
        inputs = processor(images=row["image"], text=row["sentence"], return_tensors="pt")
        with torch.no_grad():
            logits = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]).logits
        pred = processor.post_process_masks(logits, inputs["original_sizes"], threshold=0.35)[0].numpy()
        gt = np.asarray(row["mask"]) > 0
        assert pred.shape == gt.shape == (row["height"], row["width"])
        i, u = np.logical_and(pred, gt).sum(), np.logical_or(pred, gt).sum()
        ious.append(1.0 if u == 0 else i / u)
        inters, unions = inters + i, unions + u
    results = read_json(out / "all_results.json")
    # One image at a time here, batches of 4 in the Trainer: float rounding differs, and a probability sitting
    # at 0.35 can flip a few boundary pixels (seen: 2.5e-7 on mIoU): the tolerance is a few pixels, not rounding.
    assert results["eval_test_mIoU"] == pytest.approx(float(np.mean(ious)), abs=1e-4)
    assert results["eval_test_oIoU"] == pytest.approx(inters / unions, abs=1e-4)
    assert results["eval_test_Prec@0.5"] == pytest.approx(float(np.mean(np.array(ious) > 0.5)), abs=1e-9)
    # The results by expression type group the same per-expression IoUs by the words of each expression.
    by_type = read_json(out / "by_expression_type.json")["test"]
    groups = {}
    for row, iou in zip(rows, ious):
        for group in expression_groups(row["sentence"]):
            groups.setdefault(group, []).append(iou)
    assert set(by_type) == set(groups)
    for group, values in groups.items():
        assert by_type[group]["count"] == len(values)
        assert by_type[group]["mIoU"] == pytest.approx(float(np.mean(values)), abs=1e-4)


# ------------------------------------------------------------------------------------ recipe parts
def test_a_json_file_with_flags_on_top(tmp_path):
    run_ris = script_module("run_ris")
    demo = os.path.join(REPO, "configs", "demo_synthetic.json")
    with open(demo) as handle:
        values = json.load(handle)
    model_args, data_args, training_args, explicit = run_ris.parse_args(
        [demo, "--synthetic_num_train", "8000", "--config_overrides", "vision_position_init_scale=0", "--seed", "43"]
    )
    assert explicit == set(values) | {"synthetic_num_train", "config_overrides", "seed"}
    assert data_args.synthetic_num_train == 8000 and training_args.seed == 43
    assert model_args.config_overrides == "vision_position_init_scale=0"
    # Everything not given as a flag comes from the file.
    assert training_args.learning_rate == values["learning_rate"] and data_args.hflip_prob == values["hflip_prob"]
    assert data_args.eval_splits == values["eval_splits"] and training_args.do_train is True

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(values, learning_rat=1.0)))
    with pytest.raises(SystemExit, match="learning_rat"):
        run_ris.parse_args([str(bad), "--seed", "1"])


def test_tiny_from_scratch_takes_its_recipe_only_where_nothing_was_given():
    run_ris = script_module("run_ris")
    argv = ["--config_preset", "tiny", "--dataset_name", "data", "--do_train", "--num_train_epochs", "6"]
    model_args, data_args, training_args, explicit = run_ris.parse_args([*argv, "--learning_rate=2e-3"])
    changed = apply_preset_defaults(model_args, data_args, training_args, explicit)
    assert training_args.learning_rate == 2e-3 and "learning_rate" not in changed  # given: kept
    assert training_args.num_train_epochs == 6
    assert training_args.lr_schedule == "hf" and training_args.lr_scheduler_type == SchedulerType.COSINE
    assert training_args.weight_decay == 0.01 and training_args.per_device_train_batch_size == 16
    assert training_args.get_warmup_steps(200) == 10 and data_args.hflip_prob == 0.5
    assert training_args.refiner_lr_ratio == 3.0
    assert set(changed) == set(TINY_FROM_SCRATCH) - {"learning_rate"}
    # The recipe is the demo run's: the same values as its JSON file.
    with open(os.path.join(REPO, "configs", "demo_synthetic.json")) as handle:
        demo = json.load(handle)
    assert {key: demo.get(key) for key in TINY_FROM_SCRATCH} == TINY_FROM_SCRATCH

    # From CLIP weights (or the vit_b16 preset) the paper's recipe stays.
    for extra in (["--clip_model_name_or_path", "openai/clip-vit-base-patch16"], ["--config_preset", "vit_b16"]):
        model_args, data_args, training_args, explicit = run_ris.parse_args([*argv, *extra])
        assert apply_preset_defaults(model_args, data_args, training_args, explicit) == {}
        assert training_args.learning_rate == 5e-5 and training_args.lr_schedule == "multistep"


def test_multistep_schedule_matches_the_paper_milestones():
    # 30 epochs of 100 steps, x0.1 at epochs 18 and 25.
    milestones = milestone_steps([18, 25], 30, 3000)
    assert milestones == [1800, 2500]
    assert [multistep_factor(s, milestones, 0.1) for s in (0, 1799, 1800, 2499, 2500, 2999)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_encoder_and_refiner_parameter_groups_use_their_lr_ratios(tmp_path):
    from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
    from modeling_asda.training.arguments import RISTrainingArguments
    from modeling_asda.training.trainer import RISTrainer

    model = ASDAForReferringSegmentation(ASDAConfig.tiny())
    assert model.config.mask_refiner_dim > 0
    args = RISTrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-4, encoder_lr_ratio=0.1, refiner_lr_ratio=3.0, weight_decay=0.01
    )
    trainer = RISTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        encoder = name.startswith(("text_model.", "vision_model."))
        refiner = name.startswith("mask_refiner.")
        assert lr_of[id(param)] == pytest.approx(1e-5 if encoder else 3e-4 if refiner else 1e-4), name
    assert decay_of[id(model.aligner.decoder.proj.weight)] == 0.01
    assert decay_of[id(model.aligner.decoder.proj.bias)] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_config_overrides_parse_types():
    assert parse_config_overrides(
        "selection=hard, num_response_masks=16,focal_alpha=0.25,low_candidate_layers=1|2|3,x=true"
    ) == {
        "selection": "hard",
        "num_response_masks": 16,
        "focal_alpha": 0.25,
        "low_candidate_layers": (1, 2, 3),
        "x": True,
    }
    with pytest.raises(ValueError, match="not key=value"):
        parse_config_overrides("aligner")


def test_hflip_swaps_words_and_pixels_and_augmentation_is_seeded_per_sample():
    assert (
        swap_left_right("The man on the LEFT, left of the leftmost Right car")
        == "The man on the RIGHT, right of the rightmost Left car"
    )
    image = torch.rand(3, 6, 8)
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[:, :2] = True
    flip = AugmentationConfig(hflip_prob=1.0)
    rng = np.random.default_rng(0)
    out_image, out_mask, sentence = augment(image, mask, "dog on the left", flip, rng, (0.5, 0.5, 0.5))
    assert torch.equal(out_image, image.flip(-1)) and out_mask[:, -2:].all() and not out_mask[:, :-2].any()
    assert sentence == "dog on the right"
    every = AugmentationConfig(hflip_prob=0.5, color_jitter=0.3, affine=True)
    first = augment(image, mask, "a", every, np.random.default_rng(5), (0.5, 0.5, 0.5))
    second = augment(image, mask, "a", every, np.random.default_rng(5), (0.5, 0.5, 0.5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_training_transform_is_deterministic_by_seed_epoch_and_sample():
    from modeling_asda import ASDAProcessor
    from modeling_asda.data.synthetic import build_synthetic_dataset

    rows = build_synthetic_dataset(num_train=4, num_val=0, num_test=0, seed=1)["train"][:4]
    processor = ASDAProcessor(image_size=128, max_length=17)
    augmentation = AugmentationConfig(hflip_prob=0.5, color_jitter=0.3, affine=True)
    transform = RISTransform(processor, train=True, augmentation=augmentation, seed=7)
    a = transform(dict(rows))
    b = transform(dict(rows))
    assert all(torch.equal(x, y) for x, y in zip(a["pixel_values"], b["pixel_values"]))
    transform.epoch = 1
    c = transform(dict(rows))
    assert not all(torch.equal(x, y) for x, y in zip(a["pixel_values"], c["pixel_values"]))
    # The letterboxed label follows the augmented image: padding stays background.
    assert all(set(label.unique().tolist()) <= {0.0, 1.0} for label in a["labels"])


# ------------------------------------------------------------------------------- slow: processes
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_accelerate_run_equals_single_process_evaluation(tmp_path):
    out = tmp_path / "ddp"
    # The command of the README: accelerate's --cpu launcher alone would start one process (no MPI here);
    # run_ris.py then starts the two gloo processes itself.
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(_free_port()),
    ]
    # 37 eval rows: not divisible by 2 processes x 4 per batch, so the last batch is uneven.
    run_script(
        TINY_RUN
        + [
            "--synthetic_num_train",
            "96",
            "--synthetic_num_eval",
            "37",
            "--eval_splits",
            "val",
            "--num_train_epochs",
            "1",
            "--do_train",
            "--do_eval",
            "--save_strategy",
            "no",
            "--output_dir",
            out,
        ],
        launcher=launcher,
    )
    distributed = read_json(out / "all_results.json")
    assert distributed["eval_val_num_samples"] == 37
    # 96 rows / (2 processes x 8) = 6 optimizer steps.
    assert read_json(out / "trainer_state.json")["global_step"] == 6

    single_out = tmp_path / "single"
    run_script(
        [
            "--model_name_or_path",
            out,
            "--dataset_name",
            "synthetic",
            "--synthetic_seed",
            "3",
            "--synthetic_num_eval",
            "37",
            "--eval_splits",
            "val",
            "--do_eval",
            "--per_device_eval_batch_size",
            "5",
            "--output_dir",
            single_out,
            "--report_to",
            "none",
        ]
    )
    single = read_json(single_out / "all_results.json")
    for metric in ("mIoU", "oIoU", "Prec@0.5", "Prec@0.7", "Prec@0.9", "num_samples"):
        assert distributed[f"eval_val_{metric}"] == pytest.approx(single[f"eval_val_{metric}"], abs=1e-12), metric


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint_with_the_same_result(tmp_path):
    common = TINY_RUN + [
        "--synthetic_num_train",
        "96",
        "--synthetic_num_eval",
        "8",
        "--do_train",
        "--num_train_epochs",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "4",
        "--hflip_prob",
        "0.5",
        "--random_affine",
        "--seed",
        "11",
    ]
    reference = tmp_path / "reference"
    run_script(common + ["--output_dir", reference])

    interrupted = tmp_path / "interrupted"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, SCRIPT] + [str(a) for a in common + ["--output_dir", interrupted]],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = interrupted / "checkpoint-12"
    deadline = time.time() + 300
    while not (checkpoint / "trainer_state.json").exists():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint-12 within 5 minutes"
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    run_script(common + ["--output_dir", interrupted, "--resume_from_checkpoint", checkpoint])
    final = read_json(interrupted / "trainer_state.json")
    expected = read_json(reference / "trainer_state.json")
    assert final["global_step"] == expected["global_step"] == 24
    losses = {entry["step"]: entry["loss"] for entry in final["log_history"] if "loss" in entry}
    expected_losses = {entry["step"]: entry["loss"] for entry in expected["log_history"] if "loss" in entry}
    resumed_steps = [step for step in expected_losses if step > 12]
    assert resumed_steps and all(
        losses[step] == pytest.approx(expected_losses[step], rel=1e-5) for step in resumed_steps
    )

    from safetensors.torch import load_file

    a, b = load_file(reference / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
