"""save_pretrained -> AutoModel.from_pretrained(trust_remote_code=True) in a fresh offline process."""

import json
import os

import numpy as np
import torch
from hub_helpers import run_fresh

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation


def test_model_folder_loads_in_fresh_offline_process_with_identical_logits(tmp_path):
    torch.manual_seed(0)
    config = ASDAConfig.tiny(selector="mlp")
    model = ASDAForReferringSegmentation(config).eval()
    # Non-trivial BatchNorm statistics, so a lost buffer would show in the logits.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)

    files = set(os.listdir(folder))
    assert "model.safetensors" in files and "pytorch_model.bin" not in files
    for name in (
        "configuration_asda.py",
        "modeling_asda.py",
        "modeling_selection.py",
        "modeling_fusion.py",
        "modeling_aligner.py",
        "modeling_loss.py",
        "modeling_layers.py",
    ):
        assert name in files, f"{name} was not copied next to the weights"
    saved_config = json.loads((folder / "config.json").read_text())
    assert saved_config["auto_map"] == {
        "AutoConfig": "configuration_asda.ASDAConfig",
        "AutoModel": "modeling_asda.ASDAForReferringSegmentation",
    }

    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 128, 128, generator=generator)
    ids = torch.zeros(2, 17, dtype=torch.long)
    ids[0, :4] = torch.tensor([49406, 320, 1125, 49407])
    ids[1, :3] = torch.tensor([49406, 4160, 49407])
    mask = (ids != 0).long()
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    np.save(tmp_path / "ids.npy", ids.numpy())
    with torch.no_grad():
        expected = model(pixels, ids, mask)

    result = run_fresh(
        f"""
        import json, numpy as np, torch
        from transformers import AutoConfig, AutoModel
        config = AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True)
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        pixels = torch.from_numpy(np.load("pixels.npy"))
        ids = torch.from_numpy(np.load("ids.npy"))
        with torch.no_grad():
            out = model(pixels, ids, (ids != 0).long())
        np.save("logits.npy", out.logits.numpy())
        # Saved again from the remote code: the copy still carries the pipeline.
        model.save_pretrained("resaved")
        import os
        resaved = {{"files": sorted(os.listdir("resaved")),
                    "pipelines": json.load(open("resaved/config.json")).get("custom_pipelines")}}
        print(json.dumps({{"model_type": config.model_type, "class": type(model).__name__,
                          "module": type(model).__module__, "selector": config.selector,
                          "low": out.low_layer_index.tolist(), "resaved": resaved}}))
        """,
        cwd=tmp_path,
    )
    assert result["model_type"] == "asda"
    assert result["class"] == "ASDAForReferringSegmentation"
    assert result["module"].startswith("transformers_modules.")
    assert result["selector"] == "mlp"
    assert result["low"] == expected.low_layer_index.tolist()
    assert "pipeline_asda.py" in result["resaved"]["files"] and "modeling_layers.py" in result["resaved"]["files"]
    assert result["resaved"]["pipelines"]["referring-image-segmentation"]["impl"] == (
        "pipeline_asda.ReferringSegmentationPipeline"
    )
    logits = np.load(tmp_path / "logits.npy")
    np.testing.assert_array_equal(logits, expected.logits.numpy())
