"""Execute the notebook in place, as it is committed: every cell run, outputs kept.

    python -m benchmarks.run_notebook      # ~2-4 minutes on a 2-core CPU; writes images/ and notebook_run.json too

Progress bars are Jupyter widgets while the notebook runs (live in Jupyter and Colab). A
saved widget shows as a frozen "0%| 0/390" line where widgets do not run (GitHub,
nbviewer), so the widget outputs are dropped before saving; the epoch lines stay.
"""
import argparse
import sys
import time

import nbformat
from nbclient import NotebookClient

from benchmarks.common import ROOT

NOTEBOOK = ROOT / "Assignment_9_Solution.ipynb"
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
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    nbformat.write(without_widgets(nb), NOTEBOOK)
    print(f"executed {NOTEBOOK.name} in {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
