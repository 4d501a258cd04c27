"""What every benchmark shares: where results go, where a figure came from, one way to write it.

The scripts run as modules from the repository root:

    python -m benchmarks.accuracy --configs "default, fp32" --seeds 1
    python -m benchmarks.docs_tables --check
"""
import functools
import hashlib
import json
import os
import platform
import subprocess
import tarfile
import time
from pathlib import Path

import torch

import utils.data
from utils.data import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
UNVERIFIED = "CIFAR-10 (unverified copy: not the official files)"


def data_label(data_dir=None):
    """'CIFAR-10 (official files)' when the folder holds the official binary archive (its published MD5, as a
    download leaves it) and every .bin file is that archive's; any other copy is named unverified."""
    root = resolve_data_dir(data_dir)
    archive, files = root / Path(utils.data.URL).name, sorted((root / "cifar-10-batches-bin").glob("*.bin"))
    if not archive.is_file() or not files:
        return UNVERIFIED
    return _label(archive.resolve(), utils.data.MD5, tuple((f, f.stat().st_mtime_ns) for f in [archive, *files]))


@functools.lru_cache(maxsize=8)
def _label(archive, md5, stamps):
    """The label of an archive and the .bin files beside it, (path, modification time) each in stamps: hashed once
    per archive, MD5 and stamps. Official when the archive has md5 and the files are its .bin members, no more."""
    if hashlib.md5(archive.read_bytes()).hexdigest() != md5:
        return UNVERIFIED
    with tarfile.open(archive) as tar:
        members = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".bin")}
    files = [f for f, _ in stamps[1:]]
    same = sorted(f.name for f in files) == sorted(members) and all(f.read_bytes() == members[f.name] for f in files)
    return "CIFAR-10 (official files)" if same else UNVERIFIED


def machine_name(device):
    """The GPU's name, or the CPU's with the threads torch uses: where a figure was measured."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    return f"{name}, {torch.get_num_threads()} threads" if name else platform.processor() or platform.machine()


def git_commit():
    """The short hash of the checked-out commit, or "unknown" without git."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def provenance(device="cpu", data_dir=None):
    """Where a figure came from: machine (and on a CPU the instruction set torch's kernels use), threads, torch
    version, data, commit and date."""
    isa = {"cpu_capability": torch.backends.cpu.get_cpu_capability()} if torch.device(device).type == "cpu" else {}
    return {"machine": machine_name(torch.device(device)), **isa, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "data": data_label(data_dir or None), "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d")}


def machine(row):
    """A result's machine as the tables print it: the CPU's name, with its instruction set where recorded."""
    name = row["machine"].replace(", 1 threads", ", 1 thread")  # rows record "N threads" for any N: kept, to merge
    return name + (f" ({row['cpu_capability']})" if row.get("cpu_capability") else "")


def update_json(path, rows, order=()):
    """Read the JSON object at path (if the file is there), set each key of rows, write it back atomically
    (indent=1); returns the whole object.

    A key keeps its place in the file; a key new to it goes right after the nearest key listed before it in
    order (at the end when there is none).
    """
    path, order = Path(path), list(order)
    results = json.loads(path.read_text()) if path.exists() else {}
    names = list(results)
    for name in rows:
        if name not in names:
            earlier = order[:order.index(name)] if name in order else []
            names.insert(max((names.index(n) + 1 for n in earlier if n in names), default=len(names)), name)
    results = {n: rows[n] if n in rows else results[n] for n in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return results
