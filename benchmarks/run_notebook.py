"""Execute the notebook in place, as it is committed: every cell run, outputs kept.

    python -m benchmarks.run_notebook      # then copies its figures into images/ and its numbers into results

The notebook itself writes only into its run folder (runs/notebook, which git ignores): running it never
changes the repository. This script is what refreshes README's figures (images/) and
benchmarks/results/notebook_run.json (the run's numbers, with where and how long Run all took).

Progress bars are Jupyter widgets while the notebook runs (live in Jupyter and Colab). A
saved widget shows as a frozen "0%| 0/390" line where widgets do not run (GitHub,
nbviewer), so the widget outputs are dropped before saving; the epoch lines stay.

The cell tagged "cost" reports what Run all cost, from notebook_run.json: it is run once more after
the rest, so that it reports this execution.
"""
import argparse
import json
import shutil
import sys
import time

import nbformat
from nbclient import NotebookClient

from benchmarks.common import RESULTS, ROOT, provenance

NOTEBOOK = ROOT / "Assignment_9_Solution.ipynb"
RUN = ROOT / "runs" / "notebook"  # the notebook's OUT
FIGURES = ("curves.png", "lr_finder.png", "confusion.png", "misclassified.png", "attention.png",
           "presets.png", "attention_positions.png", "course_run.png")
WIDGET = "application/vnd.jupyter.widget-view+json"


def without_widgets(nb):
    """Drop widget outputs (and the saved widget state) from an executed notebook."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    return nb


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t = time.perf_counter()
    client = dict(kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    shutil.rmtree(RUN, ignore_errors=True)  # a fresh run, not a resumed one
    NotebookClient(nb, timeout=3600, **client).execute()
    wall_s = time.perf_counter() - t
    for name in FIGURES:
        shutil.copy(RUN / name, ROOT / "images" / name)
    numbers = json.loads((RUN / "notebook_run.json").read_text())
    (RESULTS / "notebook_run.json").write_text(json.dumps({**numbers, **provenance(numbers["device"]), "wall_s": wall_s},
                                                          indent=1))
    cost = next((c for c in nb.cells if "cost" in c.metadata.get("tags", [])), None)
    if cost is not None:  # again, now that notebook_run.json holds this execution
        again = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cost.source)], metadata=nb.metadata)
        NotebookClient(again, timeout=600, **client).execute()
        cost.outputs = again.cells[0].outputs
    nbformat.write(without_widgets(nb), NOTEBOOK)
    print(f"executed {NOTEBOOK.name} in {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
