"""Reading the process's memory: the peak of a piece of work, and the line fitted through measured peaks."""

import json
import subprocess
import sys

import pytest

from modeling_asda.benchmark.memory import extrapolate_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status is Linux's")
def test_peak_of_work_sees_a_known_allocation():
    # A fresh process, as the memory scripts use it: in a long-lived one the kernel's peak counter can lag.
    code = """
import json
import numpy as np
from modeling_asda.benchmark.memory import peak_rss_of, resident_mb

def work():
    block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB, every page written
    assert block.sum() > 0

result = peak_rss_of(work)
print(json.dumps(dict(result, after=resident_mb("VmRSS"), missing=resident_mb("NoSuchField"))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["method"].startswith(("VmHWM", "ru_maxrss"))
    assert result["peak_rss_mb"] - result["rss_before_mb"] >= 190
    assert result["after"] < result["peak_rss_mb"]  # the block is freed again
    assert result["missing"] is None


def test_extrapolation_is_the_line_through_the_first_and_last_rows():
    rows = [
        {"batch": 1, "peak_rss_mb": 1100.0},
        {"batch": 2, "peak_rss_mb": 1150.0},
        {"batch": 4, "peak_rss_mb": 1400.0},
    ]
    fit = extrapolate_peak(rows, target_batch=14)
    assert fit["per_image_mb"] == pytest.approx(100.0)  # (1400 - 1100) / (4 - 1)
    assert fit["fixed_mb"] == pytest.approx(1000.0)
    assert fit["estimate_mb"] == pytest.approx(2400.0)
    with pytest.raises(ValueError, match="two different batch sizes"):
        extrapolate_peak(rows[:1], target_batch=14)
