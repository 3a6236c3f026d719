"""The Gradio demo (scripts/demo_app.py, space/app.py): an image and one or several expressions -> masks.

The page shows the overlay, the mask as a PNG at the image's original size (downloadable), the layers the
adaptive selection chose, the score and the latency. The same function is the API endpoint `/segment`:
(image, text) -> (overlay image, mask image, info JSON); with several expressions (one per line) the
mask is their union and every expression's own mask is listed in the info and offered as a file.
Unreadable images and empty text raise `gradio.Error`, which the page shows as a message.
"""

import os
import tempfile
import time

import numpy as np
from PIL import Image

from .predict import UnreadableFile, read_image
from .visualization import MASK_COLOR, overlay_mask

# One colour per expression; the first is the single-expression colour of predict.py's overlays.
COLORS = (MASK_COLOR, (0, 200, 255), (255, 200, 0), (0, 255, 120), (255, 80, 80), (160, 110, 255))
MAX_EXPRESSIONS = 8


def load_segmenter(model: str, backend: str = "torch", int8: bool = False):
    """A `ReferringSegmentationPipeline` for a checkpoint (torch) or an exported folder (onnxruntime)."""
    import torch

    from ..pipeline_asda import ReferringSegmentationPipeline

    if backend == "onnxruntime":
        from ..export.onnx_model import load_onnx_model_and_processor

        model_, processor = load_onnx_model_and_processor(model, int8=int8)
    elif backend == "torch":
        from ..evaluation.inference import load_model_and_processor

        model_, processor = load_model_and_processor(model, device="cpu")
    else:
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    return ReferringSegmentationPipeline(model=model_, processor=processor, device=torch.device("cpu"))


def parse_expressions(text) -> list[str]:
    """One expression per non-empty line; a readable error when there is none or too many."""
    import gradio as gr

    expressions = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if not expressions:
        raise gr.Error("Type an expression (for example: the red circle on the left); one per line for several.")
    if len(expressions) > MAX_EXPRESSIONS:
        raise gr.Error(f"At most {MAX_EXPRESSIONS} expressions at a time; got {len(expressions)}.")
    return expressions


def open_image(image) -> Image.Image:
    """The uploaded image as RGB: a path (what the page and the API send), a PIL image or an array."""
    import gradio as gr

    if image is None:
        raise gr.Error("Upload an image (or pick an example) first.")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image.astype(np.uint8)).convert("RGB")
    if isinstance(image, dict) and "path" in image:
        image = image["path"]
    try:
        return read_image(image)
    except UnreadableFile as err:
        raise gr.Error(f"Could not read {os.path.basename(str(image))}: {err}.") from None


def segment_image(segmenter, image, text, output_dir: str) -> tuple[Image.Image, str, dict]:
    """(overlay, path of the mask PNG, info) for an image and one or several expressions."""
    expressions = parse_expressions(text)
    picture = open_image(image)
    start = time.perf_counter()
    results = segmenter(picture, text=expressions, mask_format="numpy", batch_size=len(expressions))
    latency_ms = (time.perf_counter() - start) * 1e3
    overlay = picture
    union = np.zeros((picture.height, picture.width), dtype=bool)
    os.makedirs(output_dir, exist_ok=True)
    stamp = f"{time.time_ns()}"
    entries = []
    for k, result in enumerate(results):
        mask = result["mask"]
        union |= mask
        banner = " | ".join(f"{i + 1}: {e}" for i, e in enumerate(expressions)) if k == len(results) - 1 else None
        overlay = overlay_mask(overlay, mask, banner, color=COLORS[k % len(COLORS)])
        path = os.path.join(output_dir, f"mask_{stamp}_{k + 1}.png")
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)
        entries.append(
            {
                "text": result["text"],
                "score": round(float(result["score"]), 4),
                "low_layer": result["low_layer"],
                "mid_layer": result["mid_layer"],
                "mask_fraction": round(float(mask.mean()), 4),
                "mask_file": os.path.basename(path),
            }
        )
    mask_path = os.path.join(output_dir, f"mask_{stamp}.png")
    Image.fromarray(union.astype(np.uint8) * 255, mode="L").save(mask_path)
    info = {
        "image_size": {"width": picture.width, "height": picture.height},
        "latency_ms": round(latency_ms, 1),
        "expressions": entries,
    }
    return overlay, mask_path, info


def example_inputs(folder: str, count: int = 3) -> list[list[str]]:
    """Scenes of the built-in synthetic data (val split, one expression each) written as PNGs at 3x size."""
    from ..data.synthetic import SyntheticConfig, generate_split

    rows = generate_split("val", 8 * count, SyntheticConfig(seed=0))
    os.makedirs(folder, exist_ok=True)
    examples, seen = [], set()
    for row in rows:
        if row["image_id"] in seen or len(examples) == count:
            continue
        seen.add(row["image_id"])
        image = row["image"].convert("RGB")
        path = os.path.join(folder, f"example_{len(examples)}.png")
        image.resize((3 * image.width, 3 * image.height), Image.NEAREST).save(path)
        examples.append([path, row["sentence"]])
    return examples


def _image_input(**kwargs):
    """A `gr.Image` input that hands files it cannot decode to the app (which says why) instead of failing first."""
    import gradio as gr

    component = gr.Image(**kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception:  # undecodable upload: `open_image` reports it by name
            return getattr(payload, "path", None) if payload is not None else None

    # An instance attribute, not a subclass: gradio writes a .pyi stub next to any module defining a component.
    component.preprocess = preprocess
    return component


def build_demo(segmenter, title: str = "ASDA referring image segmentation", examples=None, output_dir=None):
    """The Gradio Blocks app around a segmenter (see `load_segmenter`)."""
    import gradio as gr

    output_dir = output_dir or tempfile.mkdtemp(prefix="asda_demo_")
    if examples is None:
        examples = example_inputs(os.path.join(output_dir, "examples"))

    def segment(image, text):
        overlay, mask_path, info = segment_image(segmenter, image, text, output_dir)
        return overlay, mask_path, info

    def details(info):
        if not info:
            return "", None
        rows = ["| # | expression | score | low layer | mid layer |", "|---|---|---:|---:|---:|"]
        for i, e in enumerate(info["expressions"]):
            rows.append(f"| {i + 1} | {e['text']} | {e['score']:.3f} | {e['low_layer']} | {e['mid_layer']} |")
        summary = (
            f"{len(info['expressions'])} expression(s) on a {info['image_size']['width']}x"
            f"{info['image_size']['height']} image in **{info['latency_ms']:.0f} ms**\n\n" + "\n".join(rows)
        )
        files = [os.path.join(output_dir, e["mask_file"]) for e in info["expressions"]]
        return summary, files

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\nUpload an image (or pick an example), type what to segment (one expression per line), "
            "press **Segment**. The mask PNG has the image's original size."
        )
        with gr.Row():
            with gr.Column():
                image = _image_input(type="filepath", label="Image", elem_id="input-image")
                text = gr.Textbox(label="Expression(s), one per line", lines=3, elem_id="expression")
                button = gr.Button("Segment", variant="primary", elem_id="segment-button")
                gr.Examples(examples=examples, inputs=[image, text])
            with gr.Column():
                overlay = gr.Image(type="pil", label="Overlay", elem_id="overlay", format="png")
                mask = gr.Image(type="filepath", label="Mask (original size)", elem_id="mask", format="png")
                summary = gr.Markdown(elem_id="summary")
                files = gr.File(label="Mask of each expression", file_count="multiple")
                info = gr.JSON(label="Info", elem_id="info")
        event = button.click(segment, inputs=[image, text], outputs=[overlay, mask, info], api_name="segment")
        event.then(details, inputs=info, outputs=[summary, files], api_name=False)
        text.submit(segment, inputs=[image, text], outputs=[overlay, mask, info], api_name=False).then(
            details, inputs=info, outputs=[summary, files], api_name=False
        )
    return demo
