"""pipeline("referring-image-segmentation"): a saved folder in a fresh offline process gives the model+processor masks."""

import json

import numpy as np
import pytest
import torch
from asda_checkpoint import synthetic_rows, trained_checkpoint  # noqa: F401 (fixture)
from hub_helpers import run_fresh
from PIL import Image

from modeling_asda import pipeline_asda
from modeling_asda.pipeline_asda import TASK, ReferringSegmentationPipeline


def reference(model, processor, image, text):
    """Mask and probabilities of one pair straight from the model and the processor."""
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        out = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
    probs = processor.post_process_masks(out.logits, inputs["original_sizes"], threshold=None)[0].numpy()
    mask = processor.post_process_masks(out.logits, inputs["original_sizes"], threshold=model.config.mask_threshold)[
        0
    ].numpy()
    return mask, probs, int(out.low_layer_index[0]), int(out.mid_layer_index[0])


def assert_masks_match(mask, expected_mask, probs, threshold, exact):
    assert mask.shape == expected_mask.shape and mask.dtype == bool
    if exact:
        np.testing.assert_array_equal(mask, expected_mask)
    else:  # batched matmuls differ in the last bits: only pixels at the threshold may flip
        differ = mask != expected_mask
        assert np.all(np.abs(probs[differ] - threshold) < 1e-4), (
            f"{differ.sum()} pixels differ away from the threshold"
        )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Three images on disk (one resized to a non-square odd size) and four (image, expression) pairs."""
    folder = tmp_path_factory.mktemp("images")
    rows = synthetic_rows(3, "test")
    paths = []
    for i, row in enumerate(rows):
        image = row["image"] if i != 1 else row["image"].resize((97, 150))
        paths.append(folder / f"image{i}.png")
        image.save(paths[-1])
    texts = list(rows["sentence"])
    return [(paths[0], texts[0]), (paths[0], "the blue star"), (paths[1], texts[1]), (paths[2], texts[2])]


def test_saved_folder_has_the_pipeline_entry(trained_checkpoint):  # noqa: F811
    """The fixture folder is a plain model.save_pretrained + processor.save_pretrained: nothing added by hand."""
    folder, _, _ = trained_checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {"impl": "pipeline_asda.ReferringSegmentationPipeline", "pt": ["AutoModel"], "type": "multimodal"}
    }
    assert (folder / "pipeline_asda.py").read_text() == open(pipeline_asda.__file__).read()
    assert config["auto_map"]["AutoModel"] == "modeling_asda.ASDAForReferringSegmentation"  # kept as saved


def test_fresh_offline_process_pipeline_equals_model_and_processor(trained_checkpoint, pairs, tmp_path):  # noqa: F811
    # `folder` was written by plain model.save_pretrained + processor.save_pretrained.
    folder, model, processor = trained_checkpoint
    # A second folder written by the pipeline's own save_pretrained (weights, code, processor, pipeline entry).
    resaved = tmp_path / "resaved"
    ReferringSegmentationPipeline(model=model, processor=processor, device="cpu").save_pretrained(resaved)

    spec = [{"image": str(path), "text": text} for path, text in pairs]
    (tmp_path / "pairs.json").write_text(json.dumps(spec))
    result = run_fresh(
        f"""
        import json, numpy as np
        from transformers import pipeline
        pairs = json.load(open("pairs.json"))
        out = {{}}
        for name, folder in (("saved", {str(folder)!r}), ("resaved", {str(resaved)!r})):
            pipe = pipeline("referring-image-segmentation", model=folder, trust_remote_code=True)
            single = pipe(pairs[0]["image"], text=pairs[0]["text"])  # one pair -> one dict, PIL mask
            batch = pipe(pairs, batch_size=3, mask_format="numpy")  # a list of dicts, batched
            np.save(f"{{name}}_single.npy", np.asarray(single["mask"]))
            for i, r in enumerate(batch):
                np.save(f"{{name}}_{{i}}.npy", r["mask"])
            out[name] = {{
                "module": type(pipe).__module__, "model_module": type(pipe.model).__module__,
                "single_mode": single["mask"].mode, "single_score": single["score"],
                "scores": [r["score"] for r in batch], "texts": [r["text"] for r in batch],
                "layers": [[r["low_layer"], r["mid_layer"]] for r in batch],
            }}
        print(json.dumps(out))
        """,
        cwd=tmp_path,
    )
    threshold = model.config.mask_threshold
    for name in ("saved", "resaved"):
        got = result[name]
        assert got["module"].startswith("transformers_modules.") and got["module"].endswith("pipeline_asda")
        assert got["model_module"].startswith("transformers_modules.")
        assert got["texts"] == [text for _, text in pairs]
        assert got["single_mode"] == "L"
        for i, (path, text) in enumerate(pairs):
            expected, probs, low, mid = reference(model, processor, Image.open(path).convert("RGB"), text)
            mask = np.load(tmp_path / f"{name}_{i}.npy")
            assert mask.shape == (Image.open(path).height, Image.open(path).width)
            assert_masks_match(mask, expected, probs, threshold, exact=False)
            assert got["layers"][i] == [low, mid]
            # score: the mean probability inside the predicted mask
            assert got["scores"][i] == pytest.approx(
                float(probs[expected].mean()) if expected.any() else 0.0, abs=1e-4
            )
            if i == 0:
                single = np.load(tmp_path / f"{name}_single.npy")
                assert set(np.unique(single)) <= {0, 255}
                assert_masks_match(single > 0, expected, probs, threshold, exact=True)  # batch of one: bit-exact
    assert 0 < sum(np.load(tmp_path / f"saved_{i}.npy").sum() for i in range(len(pairs)))  # not all empty


def test_input_forms_and_parameters(trained_checkpoint, pairs):  # noqa: F811
    _, model, processor = trained_checkpoint
    pipe = ReferringSegmentationPipeline(model=model, processor=processor, device="cpu")
    image = Image.open(pairs[0][0])
    texts = ["the red circle", "the star on the left"]

    one = pipe(image, text=texts[0], mask_format="numpy")
    assert isinstance(one, dict) and one["mask"].shape == (image.height, image.width)
    several = pipe(image, text=texts, mask_format="numpy")  # one image, several expressions
    assert [r["text"] for r in several] == texts
    np.testing.assert_array_equal(several[0]["mask"], one["mask"])
    same_text = pipe([image, image], text="the red circle", mask_format="numpy")
    assert len(same_text) == 2 and np.array_equal(same_text[1]["mask"], one["mask"])
    as_dicts = pipe([{"image": image, "text": t} for t in texts], mask_format="numpy")
    assert [np.array_equal(a["mask"], b["mask"]) for a, b in zip(as_dicts, several)] == [True, True]
    streamed = list(pipe(({"image": image, "text": t} for t in texts), batch_size=2, mask_format="numpy"))
    assert [r["text"] for r in streamed] == texts

    # The threshold is applied to the same probabilities: a higher one gives a subset, 0 gives everything.
    _, probs, _, _ = reference(model, processor, image.convert("RGB"), texts[0])
    high = pipe(image, text=texts[0], threshold=0.6, mask_format="numpy")["mask"]
    np.testing.assert_array_equal(high, probs > 0.6)
    assert pipe(image, text=texts[0], threshold=0.0, mask_format="numpy")["mask"].all()
    assert pipe(image, text=texts[0], bf16=True, mask_format="numpy")["mask"].shape == one["mask"].shape

    with pytest.raises(ValueError, match="2 images and 3 texts"):
        pipe([image, image], text=["a", "b", "c"])
    with pytest.raises(ValueError, match="do not pass text"):
        pipe({"image": image, "text": "a"}, text="b")
    with pytest.raises(ValueError, match="pass the expression"):
        pipe(image)
    with pytest.raises(ValueError, match="items \\[1\\] are not"):
        pipe([{"image": image, "text": "a"}, image])
    with pytest.raises(ValueError, match="threshold"):
        pipe(image, text="a", threshold=1.5)
    with pytest.raises(ValueError, match="mask_format"):
        pipe(image, text="a", mask_format="tensor")
    with pytest.raises(ValueError, match="needs the ASDA processor"):
        ReferringSegmentationPipeline(model=model, device="cpu")
