"""Each utils/ file, copied alone into an empty folder, imports and works: the helpers travel."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, write_bin_layout

RUNS = {
    "data.py": """
from data import Loader, load_cifar10
x, y = load_cifar10(DATA, train=False, download=False)
batches = list(Loader(x, y, batch_size=8, train=True, augment=("crop", "flip")))
assert len(batches) == 2 and batches[0][0].shape == (8, 3, 32, 32)
""",
    "device.py": """
from device import grad_scaler, pick_device, precision_for
dev = pick_device("cpu", verbose=False)
assert precision_for(dev) in ("bf16", "fp32") and not grad_scaler(dev, "bf16").is_enabled()
""",
    "schedule.py": """
from schedule import one_cycle_lr
assert one_cycle_lr(0, 100, 1.0, 20) == 0.1 and one_cycle_lr(20, 100, 1.0, 20) == 1.0
""",
    "lr_finder.py": """
import torch
from lr_finder import find_lr
torch.manual_seed(0)
batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(30)]
model = torch.nn.Linear(4, 3)
r = find_lr(model, torch.optim.Adam(model.parameters()), torch.nn.functional.cross_entropy, batches,
            num_iter=30, progress=False)
assert len(r["lrs"]) == 30 and r["suggested"] > 0
""",
    "training.py": """
import torch
from training import Checkpoint, evaluate, train_epoch
torch.manual_seed(0)
batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(4)]
model = torch.nn.Linear(4, 3)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
ckpt = Checkpoint("run/checkpoint.pt")
for epoch in (1, 2):
    tr = train_epoch(model, batches, opt, grad_clip=1.0, progress=False)
    te = evaluate(model, batches)
    ckpt.save(model, opt, history={"epochs": epoch})
assert te["loss"] < 1.2 and len(tr["lrs"]) == 4
assert Checkpoint("run/checkpoint.pt", resume=True).load(model, opt) == {"epochs": 2}
""",
    "plots.py": """
from plots import plot_curves
rows = [{"epoch": e, "train_loss": 2 - e / 10, "test_loss": 2.1 - e / 10, "train_acc": 9 + e, "test_acc": 8 + e} for e in (1, 2)]
plot_curves({"epochs": rows}, "curves.png")
import os; assert os.path.getsize("curves.png") > 1000
""",
}


def test_every_utils_file_is_covered():
    assert set(RUNS) == {p.name for p in (ROOT / "utils").glob("*.py")} - {"__init__.py"}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_utils_file_copied_alone_imports_and_runs(name, tmp_path):
    alone = tmp_path / "project"
    alone.mkdir()
    shutil.copy(ROOT / "utils" / name, alone / name)
    write_bin_layout(tmp_path / "data", n=16)
    code = f"DATA = {str(tmp_path / 'data')!r}\n" + RUNS[name]
    done = subprocess.run([sys.executable, "-c", code], cwd=alone, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_importing_utils_does_not_import_torch_lr_finder():
    code = "import sys, train\nfrom utils.training import train_epoch\nassert 'torch_lr_finder' in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
