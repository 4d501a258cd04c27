"""The notebook runs end to end on real data, in a small configuration, with no error cell."""
import json

import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_notebook_executes_on_a_real_slice(cifar_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    nb = nbformat.read(ROOT / "Assignment_9_Solution.ipynb", as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell(  # what papermill would inject
        "from dataclasses import replace\n"
        "cfg = replace(cfg, epochs=2, train_subset=2048, test_subset=1024, lr_finder_iters=20, download=False)\n"
        f"OUT, IMAGES, RESULTS = {str(tmp_path / 'run')!r}, {str(tmp_path / 'images')!r}, {str(tmp_path / 'r.json')!r}"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 8
    assert json.loads((tmp_path / "r.json").read_text())["history"][-1]["epoch"] == 2
    for png in ("lr_finder.png", "losses.png", "accs.png", "confusion.png", "misclassified.png", "attention.png"):
        assert (tmp_path / "images" / png).exists()
