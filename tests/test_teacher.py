"""The distilled preset trains its missing teacher first, on a small folder of random images at width 4: the logits
cached for later runs, and a Ctrl-C that never leaves a half file nor discards a finished teacher."""
import functools
import json
from pathlib import Path

import pytest
import torch

import models.teacher
import train
from conftest import write_bin_layout
from test_interrupt import advice, stop_at

ARGS = ["--preset", "distilled", "--train-subset", "256", "--test-subset", "64", "--epochs", "1", "--max-lr", "1e-3",
        "--no-download", "--no-progress", "--device", "cpu", "--precision", "fp32"]
LOGITS = Path(train.TEACHER)  # relative: each test runs in its own folder


def distilled(tmp_path, monkeypatch, images_per_file):
    """train.py's arguments for the distilled preset in tmp_path, on 5 x images_per_file training images, with a
    1-epoch width-4 teacher."""
    write_bin_layout(tmp_path / "data", n=images_per_file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train, "make_teacher", functools.partial(train.make_teacher, epochs=1, width=4))
    return [*ARGS, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")]


def test_a_missing_teacher_is_trained_first_and_its_logits_reused_by_the_next_run(tmp_path, monkeypatch, capsys):
    args = distilled(tmp_path, monkeypatch, 720)  # 3,600 images: 7 teacher steps, enough to time its pace
    a = train.parser().parse_args(args)
    cfg = train.config_from_args(a)
    train.train_and_report(cfg, a.out, progress=False, images=False)
    out = capsys.readouterr().out
    assert f"no teacher logits at {LOGITS}: training the teacher first (ResNet-9 width 4, 1 epochs, 3,600 images" in out
    assert "teacher: about " in out and "(an estimate from the pace of its first 7 steps)" in out
    logits = torch.load(LOGITS, weights_only=True)
    assert logits.shape == (3600, 10) and torch.isfinite(logits).all()
    assert json.loads(LOGITS.with_name("teacher.json").read_text())["name"] == "ResNet-9 width 4, 1 epochs"
    assert sorted(p.name for p in LOGITS.parent.iterdir()) == ["logits.pt", "teacher.json"]  # no temporary file left
    monkeypatch.setattr(train, "train_teacher", None)  # a second teacher would fail
    train.train_and_report(cfg, a.out, progress=False, images=False)
    assert "no teacher logits" not in capsys.readouterr().out
    assert torch.equal(torch.load(LOGITS, weights_only=True), logits)


def half_save(obj, f):
    """torch.save cut short by a Ctrl-C: half a file written, then the interrupt."""
    Path(f).write_bytes(b"half")
    raise KeyboardInterrupt


WINDOWS = {  # where the Ctrl-C lands: what raises it, and whether the teacher's logits are saved by then
    "the teacher's first test pass": ((models.teacher, "evaluate", 1), False),
    "the teacher's logits being written": ((torch, "save", None), False),
    "the student's first epoch": ((train, "train_epoch", 1), True),
}


@pytest.mark.parametrize("window", WINDOWS)
def test_ctrl_c_leaves_a_whole_teacher_or_none_in_one_line(window, tmp_path, monkeypatch, capsys):
    args = distilled(tmp_path, monkeypatch, 60)
    (owner, name, call), saved = WINDOWS[window]
    with monkeypatch.context() as m:
        if call is None:
            m.setattr(owner, name, half_save)
        else:
            stop_at(m, owner, name, call)
        assert train.main(args) == 130
    line, again = advice(capsys.readouterr().err)
    assert ("interrupted while training the teacher" in line) != saved and again == args, line
    assert LOGITS.exists() == saved and LOGITS.with_name("teacher.json").exists() == saved
    assert not list(LOGITS.parent.glob("*.tmp"))


def test_train_py_trains_the_teacher_that_benchmarks_teacher_makes_and_names():
    from benchmarks import teacher
    a = teacher.parser().parse_args([])
    assert {"epochs": a.epochs, "width": a.width, "max_lr": a.max_lr, "seed": 0} == models.teacher.RECIPE
    assert models.teacher.teacher_name(a.width, a.epochs) == teacher.name(a) == "ResNet-9 width 32, 12 epochs"
