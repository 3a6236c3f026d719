"""Model cards: rendered from the template with the measured results, loaded back and checked by huggingface_hub."""

import configparser
import fnmatch
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from transformers import HfArgumentParser

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.evaluation.model_card import (
    CONTEXT_FILE,
    TEMPLATE_NAME,
    push_folder_to_hub,
    template_path,
    write_model_card,
)
from modeling_asda.training.arguments import DataArguments, ModelArguments, RISTrainingArguments

REPO = Path(__file__).resolve().parent.parent
ROWS = {
    "ASDA (this run)": {
        "val": {"mIoU": 0.412345, "oIoU": 0.50049, "Prec@0.5": 0.4, "Prec@0.7": 0.2, "Prec@0.9": 0.01},
        "test": {"mIoU": 0.39876, "oIoU": 0.4811, "Prec@0.5": 0.38, "Prec@0.7": 0.19, "Prec@0.9": 0.0},
    },
    "baseline: whole image": {"val": {"mIoU": 0.0666, "oIoU": 0.0661}},
}


@pytest.fixture(scope="module")
def model():
    return ASDAForReferringSegmentation(ASDAConfig.tiny())


def parse(argv):
    return HfArgumentParser((ModelArguments, DataArguments, RISTrainingArguments)).parse_args_into_dataclasses(
        args=argv
    )


def write(model, tmp_path, extra=(), rows=ROWS):
    argv = [
        "--config_preset",
        "tiny",
        "--dataset_name",
        "synthetic",
        "--synthetic_num_train",
        "512",
        "--eval_splits",
        "val,test",
        "--do_train",
        "--do_eval",
        "--learning_rate",
        "1e-3",
        "--lr_schedule",
        "hf",
        "--hflip_prob",
        "0.5",
        "--output_dir",
        str(tmp_path / "asda-run"),
        "--report_to",
        "none",
        *extra,
    ]
    model_args, data_args, training_args = parse(argv)
    summary = {"command": "python scripts/run_ris.py " + " ".join(argv), "wall_seconds": 93.0}
    write_model_card(model, training_args.output_dir, model_args, data_args, training_args, rows, summary)
    return Path(training_args.output_dir)


def test_card_validates_and_its_model_index_holds_the_measured_values(model, tmp_path):
    folder = write(model, tmp_path)
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")  # parses the YAML and the model-index (raises if malformed)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "image-segmentation"
    assert data.datasets == ["asda-synthetic"] and data.license == "mit"
    assert "custom_code" in data.tags and "referring-image-segmentation" in data.tags
    assert data.base_model is None and "base_model" not in text.split("---")[1]  # random init: no base model
    assert "\nmodel-index:\n" in text
    assert data.model_name == "asda-run"
    measured = {
        (s, m.lower()): round(100 * v[m], 2) for s, v in ROWS["ASDA (this run)"].items() for m in ("mIoU", "oIoU")
    }
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results} == measured
    assert measured[("val", "miou")] == 41.23 and measured[("val", "oiou")] == 50.05
    assert all(r.task_type == "image-segmentation" and r.dataset_type == "asda-synthetic" for r in data.eval_results)

    for section in (
        "## Results",
        "## Evaluation protocol",
        "## How to use",
        "## Training recipe",
        "## Intended use and limits",
    ):
        assert section in text
    assert "| ASDA (this run) | 41.23 | 50.05 | 40.00 | 20.00 | 1.00 | 39.88 | 48.11 |" in text
    assert "threshold of **0.35**" in text and "**original image size**" in text
    assert text.count("trust_remote_code=True") >= 3 and 'REVISION = "main"  # pin' in text
    assert "| learning rate | 0.001 (CLIP encoders x1.0) |" in text
    assert "| augmentation | horizontal flip p=0.5 (swaps left/right) |" in text
    assert "python scripts/run_ris.py --config_preset tiny" in text and "does not segment natural images" in text
    assert json.loads((folder / CONTEXT_FILE).read_text())["eval_results"][0]["metric_value"] == 41.23


def test_base_model_and_dataset_ids(model, tmp_path):
    hub = ModelCard.load(
        write(model, tmp_path / "a", ["--clip_model_name_or_path", "openai/clip-vit-base-patch16"]) / "README.md"
    )
    assert hub.data.base_model == "openai/clip-vit-base-patch16"
    local = ModelCard.load(write(model, tmp_path / "b", ["--clip_model_name_or_path", str(tmp_path)]) / "README.md")
    assert local.data.base_model is None  # a local folder is no Hub id
    rows = {"ASDA (this run)": {"testA": {"mIoU": 0.7, "oIoU": 0.72}}}
    card = ModelCard.load(
        write(model, tmp_path / "c", ["--dataset_name", "/data/refer", "--dataset_config", "refcoco"], rows=rows)
        / "README.md"
    )
    assert card.data.datasets == ["jxu124/refcoco"]
    assert card.data.eval_results[0].dataset_split == "testA" and card.data.eval_results[0].metric_value == 70.0
    assert "inherits COCO's coverage and biases" in card.text
    no_eval = ModelCard.load(write(model, tmp_path / "d", rows={}) / "README.md")
    assert no_eval.data.eval_results is None and "No evaluation was run." in no_eval.text


def test_template_is_installed_as_package_data():
    assert template_path().is_file()
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    package = ".".join(template_path().parent.relative_to(REPO).parts)
    patterns = [p.strip() for p in setup["options.package_data"][package].split(",")]
    assert any(fnmatch.fnmatch(TEMPLATE_NAME, p) for p in patterns), "setup.cfg must install the template"


class FakeHfApi:
    """Records the upload calls; no network."""

    calls = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private))
        return SimpleNamespace(repo_id=f"someone/{repo_id}")

    def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
        self.calls.append(("upload_folder", repo_id, tuple(ignore_patterns)))
        return SimpleNamespace(oid="0123456789abcdef0123456789abcdef01234567")

    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, commit_message):
        self.calls.append(("upload_file", repo_id, path_in_repo, Path(path_or_fileobj).read_text()))


def test_push_pins_the_card_to_the_uploaded_commit(model, tmp_path, monkeypatch):
    import huggingface_hub

    folder = write(model, tmp_path)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    _, _, training_args = parse(["--output_dir", str(folder), "--report_to", "none"])
    commit = push_folder_to_hub(str(folder), training_args)
    assert commit.oid.startswith("0123456789ab")
    (_, name, private), (_, repo, ignored), (_, repo_again, path, uploaded) = FakeHfApi.calls
    assert name == "asda-run" and repo == repo_again == "someone/asda-run" and path == "README.md"
    assert CONTEXT_FILE in ignored and "checkpoint-*" in ignored
    assert 'REVISION = "0123456789abcdef0123456789abcdef01234567"\n' in uploaded
    assert 'model="someone/asda-run", revision=REVISION, trust_remote_code=True' in uploaded
    card = ModelCard.load(folder / "README.md")  # the local card is the pinned one too
    assert card.text == ModelCard(uploaded).text
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}[
        ("test", "oiou")
    ] == 48.11


def test_example_cards_in_model_cards_validate():
    cards = sorted((REPO / "model_cards").glob("*.md"))
    assert cards, "model_cards/ should hold the card of the default run"
    for path in cards:
        card = ModelCard.load(path)
        assert card.data.pipeline_tag == "image-segmentation" and card.data.library_name == "transformers"
        table_row = next(line for line in card.text.splitlines() if line.startswith("| ASDA (this run) |"))
        header = next(line for line in card.text.splitlines() if line.startswith("| Method |"))
        cells = dict(
            zip([h.strip() for h in header.split("|")[2:-1]], [c.strip() for c in table_row.split("|")[2:-1]])
        )
        for result in card.data.eval_results:  # model-index values = the card's own results table
            metric = {"miou": "mIoU", "oiou": "oIoU"}[result.metric_type]
            assert float(cells[f"{result.dataset_split} {metric}"]) == result.metric_value


def test_card_names_the_refiner_learning_rate_ratio_when_it_is_not_one(model, tmp_path):
    text = (write(model, tmp_path, extra=["--refiner_lr_ratio", "3"]) / "README.md").read_text()
    assert "| learning rate | 0.001 (CLIP encoders x1.0, mask refiner x3.0) |" in text


def test_card_names_the_refiner_only_phase_when_the_run_had_one(model, tmp_path):
    plain = (write(model, tmp_path / "plain") / "README.md").read_text()
    assert "after training" not in plain
    text = (
        write(model, tmp_path / "tail", extra=["--refiner_lr_ratio", "3", "--refiner_tail_steps", "400"]) / "README.md"
    ).read_text()
    row = "| after training | the mask refiner alone for 400 steps on the frozen model's eval-mode logits (cosine from 0.003, no warm-up) |"
    assert row in text
