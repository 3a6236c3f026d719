"""The held-out gRefCOCO-layout generator writes the same files for the same seed in every process."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

GENERATOR = Path(__file__).with_name("heldout_grefcoco.py")


def _write(root: Path, hash_seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    subprocess.run(
        [sys.executable, str(GENERATOR), str(root), "--train_refs", "40", "--eval_refs", "10"],
        check=True,
        env=env,
        capture_output=True,
    )


def test_same_seed_same_files_whatever_the_hash_seed(tmp_path):
    # Python randomises the order of a set of strings per process; the data must not follow it.
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, "1")
    _write(second, "2")
    for name in ("grefcoco/grefs(unc).json", "grefcoco/instances.json"):
        assert filecmp.cmp(first / name, second / name, shallow=False), name
    images = sorted(p.name for p in (first / "images" / "train2014").iterdir())
    assert images == sorted(p.name for p in (second / "images" / "train2014").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(
        first / "images" / "train2014", second / "images" / "train2014", images, shallow=False
    )
    assert not mismatch and not errors and len(match) == len(images) > 10
