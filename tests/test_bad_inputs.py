"""Bad inputs end to end through processor + model: each has a defined result or a clear error."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor


@pytest.fixture(scope="module")
def model_and_processor():
    torch.manual_seed(0)
    config = ASDAConfig.tiny()
    return ASDAForReferringSegmentation(config).eval(), ASDAProcessor.from_model_config(config)


def segment(model, processor, images, texts):
    inputs = processor(images=images, text=texts, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]).logits
    return inputs, processor.post_process_masks(
        logits, inputs["original_sizes"], threshold=model.config.mask_threshold
    )


@pytest.mark.parametrize("size", [(1, 1), (10000, 50), (50, 10000), (3, 700)])
def test_extreme_image_sizes_give_masks_of_the_original_size(model_and_processor, size):
    width, height = size
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    inputs, masks = segment(*model_and_processor, [image], ["the red circle"])
    assert inputs["pixel_values"].shape == (1, 3, 128, 128)
    assert masks[0].shape == (height, width) and masks[0].dtype == torch.bool


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_or_whitespace_text_is_refused_with_its_index(model_and_processor, text):
    model, processor = model_and_processor
    image = Image.new("RGB", (64, 48))
    with pytest.raises(ValueError, match=r"text 1 .*empty"):
        processor(images=[image, image], text=["the dog", text], return_tensors="pt")


def test_a_200_word_expression_is_truncated_with_a_warning_and_keeps_eot(model_and_processor, caplog):
    model, processor = model_and_processor
    long_text = " ".join(["red"] * 200)
    with caplog.at_level(logging.WARNING):
        inputs, masks = segment(model, processor, [Image.new("RGB", (80, 60))], [long_text])
    assert any("lost" in record.getMessage() for record in caplog.records)
    ids = inputs["input_ids"][0]
    assert ids.shape == (17,) and ids[0] == 49406 and ids[-1] == 49407 and inputs["attention_mask"][0].all()
    assert masks[0].shape == (60, 80)


def test_emoji_and_other_unicode_are_tokenised_and_segmented(model_and_processor):
    model, processor = model_and_processor
    texts = ["the 🐶 on the left 👈", "le chien à gauche", "左边的狗"]
    inputs, masks = segment(model, processor, [Image.new("RGB", (40, 30))] * 3, texts)
    for row in range(3):
        length = int(inputs["attention_mask"][row].sum())
        assert length > 2  # SOT, some tokens, EOT
        assert inputs["input_ids"][row, length - 1] == 49407
    assert all(mask.shape == (30, 40) for mask in masks)


def test_different_numbers_of_images_and_texts_are_refused(model_and_processor):
    _, processor = model_and_processor
    with pytest.raises(ValueError, match="2 .*3|3 .*2"):
        processor(images=[Image.new("RGB", (8, 8))] * 2, text=["a", "b", "c"], return_tensors="pt")


def test_labels_of_the_wrong_size_are_refused_by_the_model(model_and_processor):
    model, processor = model_and_processor
    image = Image.new("RGB", (50, 40))
    inputs = processor(images=[image], text=["the dog"], masks=[np.ones((40, 50), bool)], return_tensors="pt")
    assert inputs["labels"].shape == (1, 128, 128)
    with pytest.raises(ValueError, match="labels have spatial size"):
        model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"], labels=inputs["labels"][:, :100])
    with pytest.raises(ValueError, match="a mask must match its image"):
        processor(images=[image], text=["the dog"], masks=[np.ones((41, 50), bool)], return_tensors="pt")
