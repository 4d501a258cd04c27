"""The helpers' examples (docs/helpers.md) run as written, on a small real slice, so they cannot drift from the code."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def examples():
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "helpers.md").read_text(), re.S)


def test_the_section_has_both_examples():
    blocks = examples()
    assert len(blocks) == 2 and "Loader(" in blocks[0] and "DataLoader(" in blocks[1]


@pytest.mark.parametrize("index", [0, 1])
def test_readme_example_runs(index, cifar_dir, tmp_path):
    code = examples()[index]
    small, n = re.subn(r"^EPOCHS, N = 24, None", "EPOCHS, N = 1, 1024", code, flags=re.M)
    small, steps = re.subn(r"num_iter=100\b", "num_iter=20", small)  # the range test: 20 steps, not 12 epochs' worth
    assert n == 1 and steps == (index == 0)
    env = {**os.environ, "CIFAR10_DIR": str(cifar_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", small], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if index == 0:
        assert (tmp_path / "runs" / "resnet" / "curves.png").stat().st_size > 1000
        assert (tmp_path / "runs" / "resnet" / "checkpoint.pt").exists()
