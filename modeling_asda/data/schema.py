"""The canonical referring-segmentation row that every loader produces and training reads.

One row per (ref, sentence): each sentence is its own training and evaluation sample, as in the
published ASDA code. Images and masks are `datasets.Image` columns, so a prepared data set is plain
Arrow/parquet that `save_to_disk`, `to_parquet` and `push_to_hub` handle without custom code.
"""

from datasets import Features, Image, Sequence, Value

# Split names follow the REFER files; loaders map other spellings onto these.
CANONICAL_SPLITS = ("train", "val", "test", "testA", "testB")

CANONICAL_FEATURES = Features(
    {
        "sample_id": Value("string"),  # unique within a data set: "<ref_id>_<sent_id>"
        "image_id": Value("int64"),
        "ref_id": Value("int64"),
        "ann_id": Value("int64"),
        "sent_id": Value("int64"),
        "category_id": Value("int64"),
        "split": Value("string"),
        "sentence": Value("string"),
        "image": Image(),  # RGB (any PIL mode accepted downstream); embedded bytes or a path
        "mask": Image(),  # single channel PNG, 0 = background, 255 = the referred object
        "bbox": Sequence(Value("float32"), length=4),  # COCO xywh, pixels of the original image
        "width": Value("int32"),
        "height": Value("int32"),
        "source": Value("string"),  # refer | grefcoco | lmms-lab | jxu124 | prepared | synthetic
        # Generalized referring segmentation (gRefCOCO): an expression may name nothing (empty mask) or several
        # objects (the mask is their union). RefCOCO-style rows have no_target False and one target.
        "no_target": Value("bool"),
        "num_targets": Value("int32"),
    }
)

CANONICAL_COLUMNS = tuple(CANONICAL_FEATURES)

# Data sets prepared before the generalized columns existed lack them; they are filled with these values.
GENERALIZED_DEFAULTS = {"no_target": False, "num_targets": 1}
CORE_COLUMNS = tuple(name for name in CANONICAL_COLUMNS if name not in GENERALIZED_DEFAULTS)
