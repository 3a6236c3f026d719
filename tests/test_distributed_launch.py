"""Launches run the parallelism they ask for: multi-machine arguments, FSDP and DeepSpeed, or a clear refusal.

The fast tests check how an `accelerate launch` command line is read and turned into a torch.distributed.run
command. The slow ones start real processes: two "machines" on 127.0.0.1 (accelerate and torchrun forms), an
FSDP run on gloo, and machine 0 of 2 without machine 1.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from modeling_asda.training.launch import (
    LaunchError,
    LaunchRequest,
    check_request,
    read_launch_request,
    torchrun_command,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_ris.py")
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
TINY = [
    "--config_preset", "tiny", "--dataset_name", "synthetic", "--synthetic_seed", "3",
    "--synthetic_num_train", "32", "--synthetic_num_eval", "9", "--eval_splits", "val",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3",
    "--lr_schedule", "hf", "--num_train_epochs", "1", "--do_train", "--do_eval", "--save_strategy", "no",
    "--report_to", "none", "--logging_steps", "1", "--ddp_timeout", "120",
]  # fmt: skip


def _env():
    return dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false"
    )


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ reading the launch command
def test_accelerate_multi_machine_flags_are_read_as_accelerate_means_them():
    cmdline = [sys.executable, "/venv/bin/accelerate", "launch", "--cpu", "--num_machines", "2", "--machine_rank",
               "1", "--main_process_ip", "10.0.0.5", "--main_process_port", "1234", "--num_processes", "4",
               "scripts/run_ris.py", "--num_processes", "99"]  # fmt: skip
    request = read_launch_request(cmdline)
    # --num_processes is the total over machines in accelerate; the script's own arguments are not read.
    assert request == LaunchRequest(4, 2, 1, "10.0.0.5", 1234, cpu=True)
    assert request.processes_per_machine == 2
    command = torchrun_command(request, "run.py", ["--ddp_timeout", "30", "--x"])
    assert command[command.index("--nnodes") + 1] == "2"
    assert command[command.index("--node_rank") + 1] == "1"
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[command.index("--master_addr") + 1] == "10.0.0.5"
    assert command[command.index("--master_port") + 1] == "1234"
    assert command[command.index("--rdzv_conf") + 1] == "timeout=30"  # machine 0 waits --ddp_timeout for the others
    assert command[command.index("run.py") :] == ["run.py", "--ddp_timeout", "30", "--x"]


def test_module_form_and_other_parents():
    request = read_launch_request([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "s.py"])
    assert (request.num_processes, request.num_machines, request.machine_rank) == (2, 1, 0)
    assert read_launch_request([sys.executable, "-m", "torch.distributed.run", "s.py"]) is None
    assert read_launch_request(["bash"]) is None


@pytest.mark.parametrize(
    "request_, accelerators, message",
    [
        (LaunchRequest(3, 2, 0, cpu=True), 0, r"--num_processes 3 cannot be split evenly over --num_machines 2"),
        (LaunchRequest(2, 2, 2, cpu=True), 0, r"--machine_rank 2 is not a rank of --num_machines 2"),
        (LaunchRequest(4, 1, 0), 1, r"4 processes per machine .* 1 GPU"),
    ],
)
def test_requests_that_cannot_run_as_asked_are_refused(request_, accelerators, message):
    with pytest.raises(LaunchError, match=message):
        check_request(request_, accelerators)
    check_request(LaunchRequest(4, 2, 1, cpu=True), 0)  # a valid one passes


def test_fsdp_with_one_process_is_refused_before_any_data_is_loaded(tmp_path):
    result = subprocess.run(
        [sys.executable, SCRIPT, *TINY, "--fsdp", "full_shard auto_wrap", "--output_dir", tmp_path / "out"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "FSDP shards the model over several processes, but this run has one" in result.stderr
    assert not (tmp_path / "out").exists()


def test_deepspeed_on_a_cpu_machine_is_refused(tmp_path):
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}))
    result = subprocess.run(
        [sys.executable, SCRIPT, *TINY, "--deepspeed", config, "--output_dir", tmp_path / "out"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "accelerate runs DeepSpeed only on GPUs" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------- slow: real processes
def _run(command, timeout=900):
    result = subprocess.run(
        [str(c) for c in command], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def _two_machines(launch_for_rank, out):
    """Start machine 1 in the background, machine 0 in the foreground; both must succeed."""
    port = _free_port()
    commands = [
        [str(c) for c in launch_for_rank(rank, port)] + [SCRIPT, *TINY, "--output_dir", str(out)] for rank in (0, 1)
    ]
    second = subprocess.Popen(
        commands[1], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        first = _run(commands[0])
    finally:
        log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log[-4000:]
    return first


def _single_process_metrics(checkpoint, out):
    _run([sys.executable, SCRIPT, "--model_name_or_path", checkpoint, "--dataset_name", "synthetic",
          "--synthetic_seed", "3", "--synthetic_num_eval", "9", "--eval_splits", "val", "--do_eval",
          "--per_device_eval_batch_size", "5", "--report_to", "none", "--output_dir", out])  # fmt: skip
    return json.loads((out / "all_results.json").read_text())


def _assert_same_evaluation(distributed, single):
    assert distributed["eval_val_num_samples"] == single["eval_val_num_samples"] == 9
    for metric in ("mIoU", "oIoU", "Prec@0.5", "Prec@0.7", "Prec@0.9"):
        assert distributed[f"eval_val_{metric}"] == pytest.approx(single[f"eval_val_{metric}"], abs=1e-12), metric


@pytest.mark.slow
def test_two_machines_with_accelerate_form_one_data_parallel_run(tmp_path):
    out = tmp_path / "run"
    _two_machines(
        lambda rank, port: ACCELERATE + ["--cpu", "--num_machines", "2", "--machine_rank", rank, "--num_processes",
                                         "2", "--main_process_ip", "127.0.0.1", "--main_process_port", port],
        out,
    )  # fmt: skip
    record = json.loads((out / "parallelism.json").read_text())
    assert record["world_size"] == 2 and record["num_nodes"] == 2
    assert record["distributed_type"] == "MULTI_CPU" and record["wrapped_model"] == "DistributedDataParallel"
    results = json.loads((out / "all_results.json").read_text())
    # 32 rows / (2 processes x 8) = 2 optimizer steps: one run over both machines, not two runs of 4 steps.
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    _assert_same_evaluation(results, _single_process_metrics(out, tmp_path / "single"))


@pytest.mark.slow
def test_two_machines_with_torchrun_and_fsdp_shard_the_model(tmp_path):
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--nnodes", "2"]
    fsdp = ["--fsdp", "full_shard auto_wrap"]
    port = _free_port()
    commands = [
        torchrun + ["--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port)]
        + [SCRIPT, *TINY, *fsdp, "--output_dir", str(out)]
        for rank in (0, 1)
    ]  # fmt: skip
    second = subprocess.Popen(
        commands[1], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _run(commands[0])
    finally:
        log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log[-4000:]

    record = json.loads((out / "parallelism.json").read_text())
    assert record["world_size"] == 2 and record["num_nodes"] == 2 and record["distributed_type"] == "FSDP"
    for rank in record["ranks"]:
        # Every transformer layer is its own FSDP unit and each rank holds about half of the parameters.
        assert rank["model_class"] == "FSDPASDAForReferringSegmentation" and rank["fsdp_modules"] >= 10
        assert 0.45 < rank["local_parameters"] / rank["parameters"] < 0.55
    assert sum(rank["local_parameters"] for rank in record["ranks"]) >= record["ranks"][0]["parameters"]
    # The saved folder is a plain checkpoint of the model's own class, not of the FSDP wrapper.
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_asda.ASDAForReferringSegmentation"
    assert not list(out.glob("_fsdp*.py"))
    _assert_same_evaluation(
        json.loads((out / "all_results.json").read_text()), _single_process_metrics(out, tmp_path / "single")
    )


@pytest.mark.slow
def test_machine_0_of_2_without_machine_1_fails(tmp_path):
    out = tmp_path / "alone"
    args = [a if a != "120" else "10" for a in TINY]  # --ddp_timeout 10: the rendezvous gives up after 10 s
    result = subprocess.run(
        ACCELERATE + ["--cpu", "--num_machines", "2", "--machine_rank", "0", "--num_processes", "2",
                      "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
                      SCRIPT, *args, "--output_dir", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "1/2 clients joined" in result.stderr or "Machine 0 of 2 failed" in result.stderr
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_the_refiner_only_phase_runs_data_parallel_and_changes_only_the_refiner(tmp_path):
    """Two processes on one machine: the phase's second Trainer wraps its own model in DDP next to the first."""
    from safetensors.torch import load_file

    runs = {}
    for name, steps in (("plain", "0"), ("tail", "3")):
        out = tmp_path / name
        _run(ACCELERATE + ["--cpu", "--num_processes", "2", "--main_process_port", _free_port(), SCRIPT, *TINY,
                           "--refiner_tail_steps", steps, "--seed", "5", "--output_dir", out])  # fmt: skip
        assert json.loads((out / "parallelism.json").read_text())["world_size"] == 2
        runs[name] = (load_file(str(out / "model.safetensors")), json.loads((out / "train_results.json").read_text()))
    (plain, _), (tail, results) = runs["plain"], runs["tail"]
    changed = [key for key in plain if not torch.equal(plain[key], tail[key])]
    assert changed and all(key.startswith("mask_refiner.") for key in changed)
    assert results["refiner_tail_loss"] > 0
