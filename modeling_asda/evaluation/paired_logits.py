"""The decoder's own logits against the model's final (refined) logits, on the same rows of one split.

A model with a mask refiner trains its other weights exactly as without it, so scoring both outputs of one
checkpoint is a paired measurement of what the refiner adds. Masks are post-processed as in `run_ris.py`
(original size, the checkpoint's threshold, the no-target head's verdict when it has one).
"""

import numpy as np
import torch

from .inference import batched_outputs
from .metrics import intersection_and_union, iou_from_counts, summarize, to_binary_mask

IOU_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


@torch.no_grad()
def paired_counts(model, processor, dataset, batch_size: int = 32) -> dict:
    """{"decoder": (I, U), "final": (I, U)}: per-row pixel counts of the two masks against the ground truth."""
    counts = {"decoder": ([], []), "final": ([], [])}
    for rows, sizes, out in batched_outputs(model, processor, dataset, batch_size, output_feature_maps=True):
        target = None if out.target_logits is None else out.target_logits.float().cpu()
        for key, logits in (("decoder", out.decoder_logits), ("final", out.logits)):
            masks = processor.post_process_masks(
                logits.float().cpu(),
                sizes,
                threshold=model.config.mask_threshold,
                target_logits=target,
                no_target_threshold=model.config.no_target_threshold,
            )
            for mask, gt in zip(masks, rows["mask"]):
                intersection, union = intersection_and_union(mask.numpy(), to_binary_mask(np.asarray(gt), "mask"))
                counts[key][0].append(intersection)
                counts[key][1].append(union)
    return counts


def paired_table(counts: dict) -> str:
    """Markdown: mIoU, oIoU, Prec@0.5/0.9 and the per-row IoU histogram of both outputs (values x100)."""
    header = "| logits | mIoU | oIoU | Prec@0.5 | Prec@0.9 | " + " | ".join(
        f"IoU {low:g}-{high:g}" for low, high in zip(IOU_BINS[:-1], IOU_BINS[1:])
    )
    lines = [header + " |", "|---" + "|---:" * (4 + len(IOU_BINS) - 1) + "|"]
    for key, (intersections, unions) in counts.items():
        summary = summarize(intersections, unions)
        ious = [iou_from_counts(i, u) for i, u in zip(intersections, unions)]
        bins = np.histogram(ious, bins=IOU_BINS)[0]  # the last bin includes 1.0
        cells = [f"{100 * summary[k]:.2f}" for k in ("mIoU", "oIoU", "Prec@0.5", "Prec@0.9")]
        lines.append(f"| {key} | " + " | ".join(cells + [str(int(b)) for b in bins]) + " |")
    return "\n".join(lines)
