"""A Ctrl-C anywhere in a run of train.py: one line that names this run's checkpoint when there is one, and
advice that, followed, never discards a saved epoch. Each interruption is injected at a fixed point."""
import json
import shlex

import pytest
import torch

import train

ARGS = ["--train-subset", "512", "--test-subset", "256", "--batch-size", "128", "--epochs", "3", "--max-lr", "5e-3",
        "--no-download", "--no-progress", "--device", "cpu", "--precision", "fp32"]


def stop_at(monkeypatch, owner, name, call=1):
    """owner.name raises KeyboardInterrupt at its call-th call, as Ctrl-C would there; other calls run as usual."""
    real, calls = getattr(owner, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, interrupted)


def run(args, capsys):
    """train.py's main on args: (exit code, stdout, stderr)."""
    code = train.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def advice(err):
    """The command the one-line message says to run next, as train.py's arguments."""
    line, = err.strip().splitlines()
    assert "Traceback" not in err
    command = shlex.split(line.rsplit(" with: ", 1)[1])
    assert command[:2] == ["python", "train.py"]
    return line, command[2:]


def saved_epochs(out):
    return len(torch.load(out / "checkpoint.pt", weights_only=True)["history"]["epochs"])


WINDOWS = {  # where the Ctrl-C lands: (what raises it, at which call), and the epochs this run has saved by then
    "setup": ((train, "load_cifar10", 1), 0),
    "LR range test": ((train, "find_lr", 1), 0),
    "epoch 2's test pass": ((train, "evaluate", 2), 1),
    "epoch 2's checkpoint being written": ((torch, "save", 2), 1),
    "the figures": ((train.plots, "plot_curves", 1), 3),
    "metrics.json": ((train, "metrics_of", 1), 3),
}


@pytest.mark.parametrize("window", WINDOWS)
def test_ctrl_c_anywhere_offers_resume_exactly_when_this_run_saved_epochs(window, cifar_dir, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    (owner, name, call), saved = WINDOWS[window]
    args = [*ARGS, "--out", str(tmp_path)]
    if window == "LR range test":
        args = [a for a in args if a not in ("--max-lr", "5e-3")] + ["--lr-finder-iters", "10"]
    with monkeypatch.context() as m:
        stop_at(m, owner, name, call)
        code, _, err = run(args, capsys)
    line, again = advice(err)
    assert code == 130
    assert ("--resume" in again) == (saved > 0), line
    if saved:
        assert str(tmp_path / "checkpoint.pt") in line and saved_epochs(tmp_path) == saved
    code, out, err = run(again, capsys)  # following the advice finishes the run from what was saved
    assert code == 0, err
    assert (f"resumed from {tmp_path / 'checkpoint.pt'} after epoch {saved}" in out) == (saved > 0)
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == 3


def test_a_resumed_run_interrupted_while_it_loads_still_offers_resume(cifar_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C in epoch 2, then in the resumed run's setup: the advice keeps --resume, and epoch 1 is never lost."""
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    with monkeypatch.context() as m:
        stop_at(m, train, "evaluate", 2)
        _, first = advice(run([*ARGS, "--out", str(tmp_path)], capsys)[2])
    with monkeypatch.context() as m:
        stop_at(m, train, "load_cifar10")
        line, second = advice(run(first, capsys)[2])
    assert line.startswith("interrupted while setting up; the checkpoint is") and second == first
    assert saved_epochs(tmp_path) == 1
    code, out, _ = run(second, capsys)
    assert code == 0 and "after epoch 1" in out and "Epoch  2/3" in out


def test_a_fresh_run_into_a_used_folder_interrupted_before_training_offers_no_other_runs_epochs(
        cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    assert run([*ARGS, "--out", str(tmp_path)], capsys)[0] == 0  # an earlier run's checkpoint stays in the folder
    with monkeypatch.context() as m:
        stop_at(m, train, "load_cifar10")
        line, again = advice(run([*ARGS, "--seed", "1", "--out", str(tmp_path)], capsys)[2])
    assert "--resume" not in again and "no epoch of this run was saved" in line


@pytest.mark.parametrize("resume", [True, False])
def test_ctrl_c_while_torch_imports_is_one_line_naming_the_checkpoint(tmp_path, resume):
    """python train.py interrupted in its first seconds, while `import torch` runs: no traceback, the same advice."""
    import subprocess
    import sys

    from conftest import ROOT
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"epochs saved by an earlier part of this run")
    args = ["--out", str(tmp_path / "run"), "--epochs", "3"] + (["--resume"] if resume else [])
    program = ("import runpy, sys\n"
               "class CtrlC:  # Ctrl-C pressed while torch is being imported\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'torch': raise KeyboardInterrupt\n"
               "sys.meta_path.insert(0, CtrlC())\n"
               f"sys.argv = ['train.py', *{args!r}]\n"
               f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130
    line, command = advice(done.stderr)
    assert line.startswith("interrupted while starting")
    if resume:  # the checkpoint is named, and the advice resumes it
        assert str(tmp_path / "run" / "checkpoint.pt") in line and command == args[:-1] + ["--resume"]
    else:  # a fresh run owns no checkpoint, whatever the folder holds
        assert "no epoch of this run was saved" in line and command == args
