"""The tiny preset's starting weights: the shipped file fits the preset, loads exactly, leaves new or reshaped
tensors at their random init, and `--tiny_init scratch` changes nothing."""

from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.evaluation.model_card import _preset_init
from modeling_asda.training.experiment import build_model_and_processor
from modeling_asda.training.tiny_init import SHIPPED_TINY_INIT, load_tiny_init, resolve_tiny_init, save_tiny_init


def _args(tiny_init=None, overrides=None, preset="tiny", checkpoint=None):
    model_args = SimpleNamespace(
        config_preset=preset,
        tiny_init=tiny_init,
        model_name_or_path=checkpoint,
        clip_model_name_or_path=None,
        config_overrides=overrides,
        revision="main",
    )
    return model_args, SimpleNamespace(max_text_length=None, dataset_config=None)


def test_the_shipped_file_covers_the_tiny_preset_exactly():
    model = ASDAForReferringSegmentation(ASDAConfig.tiny())
    report = load_tiny_init(model, resolve_tiny_init("synthetic"))
    # A change of the preset's architecture must come with a new file (scripts/make_tiny_init.py).
    assert report["not_in_file"] == [] and report["shape_differs"] == [] and report["not_in_model"] == []
    with safe_open(str(SHIPPED_TINY_INIT), framework="pt") as handle:
        assert handle.metadata()["made_by"].startswith("python scripts/run_ris.py")


def test_build_loads_the_file_by_default_and_scratch_is_the_random_init():
    expected = load_file(str(SHIPPED_TINY_INIT))
    model, _ = build_model_and_processor(*_args())
    state = model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor.to(state[name].dtype)), name

    torch.manual_seed(0)
    scratch, _ = build_model_and_processor(*_args("scratch"))
    torch.manual_seed(0)
    fresh = ASDAForReferringSegmentation(ASDAConfig.tiny())
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in scratch.state_dict().items())


def test_tiny_init_beside_a_checkpoint_is_ignored_with_a_warning(tmp_path, caplog):
    torch.manual_seed(4)
    source = ASDAForReferringSegmentation(ASDAConfig.tiny())
    source.save_pretrained(tmp_path / "ckpt")
    with caplog.at_level("WARNING"):
        model, _ = build_model_and_processor(*_args("scratch", checkpoint=str(tmp_path / "ckpt")))
    assert "--tiny_init scratch is ignored" in caplog.text
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())


def test_reshaped_and_new_tensors_keep_their_random_init(tmp_path):
    torch.manual_seed(1)
    source = ASDAForReferringSegmentation(ASDAConfig.tiny(mask_refiner_dim=0))
    source.save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(2)
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(image_size=96))  # another position table, a refiner
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_tiny_init(model, resolve_tiny_init(str(tmp_path / "ckpt")))

    position = "vision_model.embeddings.position_embedding.weight"
    assert any(entry.startswith(position) for entry in report["shape_differs"])
    assert report["not_in_file"] and all(name.startswith("mask_refiner.") for name in report["not_in_file"])
    state, src = model.state_dict(), source.state_dict()
    for name in report["not_in_file"] + [position]:
        assert torch.equal(state[name], before[name]), name
    for name in report["loaded"]:
        assert torch.equal(state[name], src[name]), name


def test_save_writes_half_precision_with_the_command_and_round_trips(tmp_path):
    torch.manual_seed(3)
    source = ASDAForReferringSegmentation(ASDAConfig.tiny())
    source.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model_card.json").write_text('{"command": "python scripts/run_ris.py --seed 3 "}')
    metadata = save_tiny_init(str(tmp_path / "ckpt"), tmp_path / "init.safetensors")
    assert metadata["made_by"] == "python scripts/run_ris.py --seed 3"

    stored = load_file(str(tmp_path / "init.safetensors"))
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    model = ASDAForReferringSegmentation(ASDAConfig.tiny())
    load_tiny_init(model, tmp_path / "init.safetensors")
    for name, tensor in source.state_dict().items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(model.state_dict()[name], expected), name
    card_line = _preset_init(SimpleNamespace(config_preset="tiny", tiny_init=str(tmp_path / "init.safetensors")))
    assert "init.safetensors" in card_line and "--seed 3" in card_line
    assert "tiny_synthetic_init.safetensors" in _preset_init(SimpleNamespace(config_preset="tiny", tiny_init=None))
    assert _preset_init(SimpleNamespace(config_preset="tiny", tiny_init="scratch")) == "random (tiny preset)"


def test_bad_sources_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors.*scratch"):
        resolve_tiny_init(str(tmp_path / "nowhere.safetensors"))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00\x01not a safetensors file")
    model = ASDAForReferringSegmentation(ASDAConfig.tiny())
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_tiny_init(model, broken)
    unrelated = tmp_path / "unrelated.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(unrelated))
    with pytest.raises(ValueError, match="no tensor matches"):
        load_tiny_init(model, unrelated)


def test_paper_width_from_random_weights_on_the_built_in_data_warns(monkeypatch, caplog):
    import modeling_asda.training.experiment as experiment

    # The warning is about the arguments; a tiny model stands in for the 178 M-parameter one.
    monkeypatch.setattr(experiment, "preset_config", lambda preset, overrides: ASDAConfig.tiny())
    model_args, data_args = _args(preset="vit_b16")
    data_args.dataset_name = "synthetic"
    with caplog.at_level("WARNING"):
        build_model_and_processor(model_args, data_args)
    assert "paper-width vit_b16 preset from random weights" in caplog.text
    caplog.clear()
    model_args, data_args = _args("scratch")
    data_args.dataset_name = "synthetic"
    with caplog.at_level("WARNING"):
        build_model_and_processor(model_args, data_args)
    assert "vit_b16" not in caplog.text
