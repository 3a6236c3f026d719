"""ASDA (Adaptive Selection with Dual Alignment) for Hugging Face transformers.

Names are resolved lazily so that light helpers (metrics, data schema) import without torch
and so that a half-installed checkout still reports a clear ImportError for the missing piece.
"""

import importlib

_LAZY = {
    "ASDAConfig": ".configuration_asda",
    "ASDAForReferringSegmentation": ".modeling_asda",
    "ASDAPreTrainedModel": ".modeling_asda",
    "ASDAOutput": ".modeling_asda",
    "ASDAImageProcessor": ".image_processing_asda",
    "ASDAProcessor": ".processing_asda",
    "ReferringSegmentationPipeline": ".pipeline_asda",
    "load_referring_dataset": ".data.loading",
    "build_synthetic_dataset": ".data.synthetic",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
