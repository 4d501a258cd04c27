"""The notebook: its first cell as Colab runs it, its committed outputs, and a small end-to-end run."""
import copy
import json
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOK = ROOT / "Assignment_9_Solution.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


def first_cell(repo_url):
    """The first code cell's source, with REPO_URL set as a student would."""
    source = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    return re.sub(r'^REPO_URL = ".*?"', f"REPO_URL = {repo_url!r}", source, count=1, flags=re.M)


def run_in_colab(source, cwd, times=1):
    """Run `source` `times` times in one fresh interpreter that looks like Colab; returns (exit code, stderr, cwd)."""
    program = ("import os, sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
               f"for _ in range({times}):\n    exec(compile({source!r}, 'cell', 'exec'), {{}})\n"
               "print(os.getcwd())")
    done = subprocess.run([sys.executable, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr, done.stdout.strip()


def test_first_cell_with_a_wrong_repo_url_stops_with_one_line(tmp_path):
    code, stderr, _ = run_in_colab(first_cell(str(tmp_path / "no-such-repo")), tmp_path)
    assert code == 1
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert stderr.startswith("Could not clone REPO_URL") and "Set REPO_URL in this cell" in stderr
    assert not (tmp_path / "repo").exists()


def test_first_cell_clones_once_and_can_run_twice(tmp_path):
    code, stderr, cwd = run_in_colab(first_cell(str(ROOT)), tmp_path, times=2)  # this checkout stands in for GitHub
    assert code == 0, stderr
    assert cwd == str(tmp_path / "repo") and (tmp_path / "repo" / "models" / "model_9.py").exists()
    assert not (tmp_path / "repo" / "repo").exists()  # the second run neither cloned nor changed folder again


def test_readme_colab_link_names_the_repository_of_repo_url():
    source = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    repo = re.search(r'^REPO_URL = "https://github.com/([^/"]+/[^/"]+?)(?:\.git)?"', source, re.M).group(1)
    link = f"https://colab.research.google.com/github/{repo}/blob/main/Assignment_9_Solution.ipynb"
    assert link in (ROOT / "README.md").read_text()


def test_committed_notebook_reads_well_without_widgets():
    """GitHub and nbviewer run no widgets: no frozen '0%| 0/390' bar may be committed."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if WIDGET in o.get("data", {})]
    assert not [o for o in outputs if "0%|" in str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 8
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code" and c.source and "REPO_URL" not in c.source)


# What each pass sets before the cells run, as papermill would inject it: the default precision on a real slice;
# then fp16 (emulated on a CPU, 10-100x slower) on a few batches, every cell after the parameters run again with it.
PASSES = {"auto": "epochs=2, train_subset=2048, test_subset=512, lr_finder_iters=20",
          "fp16": "epochs=2, train_subset=32, test_subset=16, batch_size=16, lr_finder_iters=6"}


@pytest.fixture(scope="module")
def executed(cifar_dir, tmp_path_factory):
    """One kernel runs the notebook once in each pass of PASSES: {precision: (its code cells, its OUT)}, and the
    repository's `git status` before and after. A cell's error is kept in its outputs, for its pass's test to see."""
    out = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    after_params = nb.cells[params + 1:]
    cells, spans = nb.cells[:params + 1], {}
    for precision, small in PASSES.items():
        inject = nbformat.v4.new_code_cell(f"QUICK = dict({small}, download=False, precision={precision!r})\n"
                                           f"OUT = {str(out / precision)!r}")
        part = [inject] + [nbformat.v4.new_code_cell(c.source, metadata=copy.deepcopy(c.metadata))
                           for c in after_params if c.cell_type == "code"]
        spans[precision] = slice(len(cells), len(cells) + len(part))
        cells = cells + part
    nb.cells = cells
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CIFAR10_DIR", str(cifar_dir))
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(ROOT)}}).execute()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    first = [c for c in nb.cells[:params + 1] if c.cell_type == "code"]
    parts = {precision: (nb.cells[span], out / precision) for precision, span in spans.items()}
    return {"first": first, "parts": parts, "git": (before, after)}


@pytest.mark.parametrize("precision", list(PASSES))
def test_notebook_executes_on_a_real_slice(executed, precision):
    cells, out = executed["parts"][precision]
    outputs = [o for c in executed["first"] + cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"], [o.get("evalue") for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", [])) >= 8
    result = json.loads((out / "notebook_run.json").read_text())
    assert result["default"]["history"][-1]["epoch"] == 2 and result["tokens"]["history"][-1]["epoch"] == 2
    assert result["tokens_config"]["lr_rule"] == "min/5" and result["tokens_config"]["augment"] == ["crop2", "flip"]
    assert result["config"]["augment"] == ["flip"] and result["config"]["preset"] == "default"
    from utils.device import pick_device, precision_for
    assert result["precision"] == (precision if precision != "auto" else precision_for(pick_device(verbose=False)))
    assert result["config"]["precision"] == result["tokens_config"]["precision"] == result["precision"]
    for png in ("lr_finder.png", "curves.png", "confusion.png", "misclassified.png", "attention.png", "presets.png",
                "attention_positions.png"):
        assert (out / png).exists()
    summary = next(c for c in cells if "summary(" in c.source)
    totals = re.findall(r"Total params: ([0-9,]+)", "".join(o.get("text", "") for o in summary.outputs))
    from models import Net, count_parameters
    from train import PRESETS
    assert [int(t.replace(",", "")) for t in totals] == [count_parameters(Net(PRESETS[p]["model"]))
                                                         for p in ("default", "reference")]
    before, after = executed["git"]
    assert after == before  # running the chapter changes no file of the repository


def test_the_training_loop_the_notebook_quotes_is_train_pys():
    """The loop shown in the notebook's markdown is the one train.train() runs, line for line."""
    text = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "markdown")
    quoted = re.search(r"```python\n(for epoch in .*?)```", text, re.S).group(1)
    source = (ROOT / "train.py").read_text()
    lines = [line.strip() for line in quoted.splitlines() if line.strip() and not line.strip().startswith("...")]
    assert len(lines) >= 3 and all(line in source for line in lines)


def test_training_twice_without_resume_is_refused_and_keeps_the_checkpoint(cifar_dir, tmp_path):
    """Running the notebook's training cell a second time must not train the trained network on."""
    import train
    run = train.setup(train.recipe(train_subset=256, test_subset=128, epochs=1, max_lr=1e-3, device="cpu",
                                   data_dir=str(cifar_dir), download=False), verbose=False)
    train.train(run, 1e-3, out_dir=tmp_path, progress=False, log=lambda line: None)
    with pytest.raises(ValueError, match="trained already.*resume=True"):
        train.train(run, 1e-3, out_dir=tmp_path, progress=False, log=lambda line: None)
    assert (tmp_path / "checkpoint.pt").exists()  # the refused call deleted nothing
    lines = []
    train.train(run, 1e-3, out_dir=tmp_path, resume=True, progress=False, log=lines.append)  # what RESUME = True does
    assert lines == [f"resumed from {tmp_path / 'checkpoint.pt'} after epoch 1"]  # nothing left to train
