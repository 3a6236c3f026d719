"""Masks and overlays for image files (scripts/predict.py): which pairs to run, reading, writing, the summary.

Expressions come from `--text` (the same ones for every image) or a file mapping images to expressions:

- JSON: `{"cat.jpg": "the cat on the left", "street.png": ["the red car", "the man"]}` (a string or a list
  per image), or a list `[{"image": "cat.jpg", "text": "the cat"}, ...]`;
- CSV with a header row `image,text`: one row per (image, expression); an image may appear on many rows.

Image names are paths relative to the `--image` folder (or absolute). Files that cannot be read (missing,
unsupported type, corrupt) are reported by name, skipped and counted; the run goes on.
"""

import csv
import json
import logging
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in Image.registered_extensions())


class UnreadableFile(Exception):
    """A file the run skips; the message says why."""


@dataclass
class ImageJob:
    name: str  # as the user wrote it (folder-relative), used in reports
    path: Path
    texts: list[str]


@dataclass
class Plan:
    jobs: list[ImageJob]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), known before reading

    @property
    def num_pairs(self) -> int:
        return sum(len(job.texts) for job in self.jobs)


def read_image(path) -> Image.Image:
    """The PIL image as stored (16-bit, palette, alpha kept: the processor reads every mode the same way as
    when it is given the file's image), turned upright by its EXIF orientation (masks match the displayed image)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableFile("missing file" if not path.exists() else "not a regular file")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UnreadableFile(f"unsupported file type {path.suffix or '(no extension)'!r}")
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright if upright is not image else image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableFile(f"corrupt or unreadable image ({type(err).__name__}: {err})") from err


def display_rgb(image: Image.Image, image_processor) -> Image.Image:
    """The image as the model sees it before the letterbox (16-bit scaled, alpha over the pad colour), as RGB."""
    from ..image_processing_asda import to_rgb_float

    pad = [value / 255.0 for value in image_processor.pad_value]
    rgb = to_rgb_float(image, 0, pad).mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(rgb, mode="RGB")


def _clean_texts(texts, where: str) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise ValueError(f"{where}: expected an expression or a non-empty list of expressions, got {texts!r}")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: every expression must be a non-empty string, got {text!r}")
    return [text.strip() for text in texts]


def read_expressions(path) -> dict[str, list[str]]:
    """A JSON or CSV expressions file (see the module doc) -> {image name: [expressions]} in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--expressions file {path} does not exist")
    mapping: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark is accepted
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
        if isinstance(data, dict):
            for name, texts in data.items():
                mapping[name] = _clean_texts(texts, f"{path}: entry {name!r}")
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if not isinstance(item, dict) or not {"image", "text"} <= set(item):
                    raise ValueError(f"{path}: item {i} must be an object with 'image' and 'text', got {item!r}")
                mapping.setdefault(str(item["image"]), []).extend(_clean_texts(item["text"], f"{path}: item {i}"))
        else:
            raise ValueError(f"{path}: expected an object {{image: expressions}} or a list of {{image, text}} objects")
    elif path.suffix.lower() == ".csv":
        # utf-8-sig: Excel writes a byte-order mark, which would otherwise become part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"image", "text"} <= set(reader.fieldnames):
                raise ValueError(
                    f"{path}: the CSV needs a header row with the columns 'image' and 'text', got {reader.fieldnames}"
                )
            for row in reader:
                line = reader.line_num
                if None in row:  # more fields than the header: an unquoted comma would cut the expression short
                    raise ValueError(
                        f"{path}: line {line} has {len(reader.fieldnames) + len(row[None])} fields but the header has "
                        f"{len(reader.fieldnames)}; put an expression that contains a comma in double quotes"
                    )
                mapping.setdefault(row["image"], []).extend(_clean_texts(row["text"] or "", f"{path}: line {line}"))
    else:
        raise ValueError(f"--expressions must be a .json or .csv file, got {path.name}")
    if not mapping:
        raise ValueError(f"{path} lists no expressions")
    return mapping


def plan_jobs(image: str, texts: list[str] | None = None, expressions: str | None = None) -> Plan:
    """Which (image, expressions) to run. `image` is a file or a folder (its files, not sub-folders, sorted)."""
    if bool(texts) == bool(expressions):
        raise ValueError("give the expressions either with --text (one or more) or with --expressions FILE, not both")
    root = Path(image)
    if not root.exists():
        raise FileNotFoundError(f"--image {image} does not exist")
    texts = _clean_texts(list(texts), "--text") if texts else None
    mapping = read_expressions(expressions) if expressions else None

    if root.is_file():
        if mapping is None:
            return Plan([ImageJob(root.name, root, texts)])
        wanted = [key for key in mapping if key in (root.name, str(root)) or Path(key).resolve() == root.resolve()]
        if not wanted:
            raise ValueError(f"{expressions} has no entry for {root.name}")
        return Plan([ImageJob(root.name, root, [t for key in wanted for t in mapping[key]])])

    if mapping is None:
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        return Plan([ImageJob(p.name, p, texts) for p in files])
    jobs = []
    for name, image_texts in mapping.items():
        path = Path(name) if os.path.isabs(name) else root / name
        jobs.append(ImageJob(name, path, image_texts))
    listed = {job.path.resolve() for job in jobs}
    unlisted = [
        p.name
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.resolve() not in listed
    ]
    if unlisted:
        logger.info(f"{len(unlisted)} image(s) in {root} have no expressions in {expressions} and are not run")
    return Plan(jobs)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "expr"


def _output_stems(jobs: list[ImageJob]) -> dict[int, str]:
    """A distinct file-name stem per job, compared after cleaning (`a b.jpg` and `a_b.jpg` both clean to `a_b`):
    images that share a stem keep their extension, and what still collides gets a numeric suffix."""
    cleaned = [re.sub(r"[^\w.-]+", "_", Path(job.name).stem) for job in jobs]
    with_extension = [re.sub(r"[^\w.-]+", "_", Path(job.name).name.replace(".", "_")) for job in jobs]
    out, used = {}, set()
    for i in range(len(jobs)):
        stem = cleaned[i] if cleaned.count(cleaned[i]) == 1 else with_extension[i]
        candidate, suffix = stem, 2
        while candidate.lower() in used:  # lower(): case-insensitive file systems merge A.png and a.png
            candidate, suffix = f"{stem}_{suffix}", suffix + 1
        used.add(candidate.lower())
        out[i] = candidate
    return out


def predict_files(
    pipe, plan: Plan, output_dir, batch_size: int = 8, threshold=None, bf16: bool = False, progress: bool = False
) -> dict:
    """Run `pipe` (a ReferringSegmentationPipeline) over the plan; write masks, overlays and predictions.jsonl.

    Returns the summary: images and pairs predicted, seconds, pairs per second, and the skipped files.
    """
    from tqdm.auto import tqdm

    from .visualization import banner_text, overlay_mask

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stems = _output_stems(plan.jobs)
    skipped = list(plan.skipped)
    pending = deque()  # (job index, expression index, image): filled as pairs are handed to the pipeline
    bar = tqdm(total=plan.num_pairs, unit="pair", disable=not progress)

    def pairs():
        for j, job in enumerate(plan.jobs):
            try:
                image = read_image(job.path)
            except UnreadableFile as err:
                skipped.append((job.name, str(err)))
                bar.write(f"skipped {job.name}: {err}", file=sys.stderr)
                bar.update(len(job.texts))
                continue
            shown = display_rgb(image, pipe.processor.image_processor)
            for k, text in enumerate(job.texts):
                pending.append((j, k, shown))
                yield {"image": image, "text": text}

    kwargs = {"mask_format": "numpy", "bf16": bf16}
    if threshold is not None:
        kwargs["threshold"] = threshold
    start = time.perf_counter()
    images_done, num_pairs = set(), 0
    with open(output_dir / "predictions.jsonl", "w", encoding="utf-8") as index:
        for result in pipe(pairs(), batch_size=batch_size, **kwargs):
            j, k, image = pending.popleft()
            job = plan.jobs[j]
            name = f"{stems[j]}_{k}_{_slug(result['text'])}"
            mask = result["mask"]
            Image.fromarray(mask.astype("uint8") * 255, mode="L").save(output_dir / f"{name}_mask.png")
            overlay_mask(image, mask, banner_text(result)).save(output_dir / f"{name}_overlay.png")
            record = {
                "image": job.name,
                "text": result["text"],
                "mask": f"{name}_mask.png",
                "overlay": f"{name}_overlay.png",
                "score": round(result["score"], 6),
                "target_present": result.get("target_present", bool(mask.any())),
                "low_layer": result["low_layer"],
                "mid_layer": result["mid_layer"],
                "height": int(mask.shape[0]),
                "width": int(mask.shape[1]),
            }
            index.write(json.dumps(record) + "\n")
            images_done.add(j)
            num_pairs += 1
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "images": len(images_done),
        "pairs": num_pairs,
        "seconds": seconds,
        "pairs_per_second": num_pairs / seconds if seconds > 0 else float("inf"),
        "skipped": skipped,
    }


def format_summary(summary: dict, device, bf16: bool) -> str:
    """The one-line timing summary."""
    line = (
        f"{summary['images']} images, {summary['pairs']} pairs in {summary['seconds']:.2f} s "
        f"({summary['pairs_per_second']:.2f} pairs/s) on {device}{' with bf16 autocast' if bf16 else ''}"
    )
    if summary["skipped"]:
        line += f"; skipped {len(summary['skipped'])} file(s): " + ", ".join(name for name, _ in summary["skipped"])
    return line
