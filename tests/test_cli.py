"""train.py from the command line: metrics.json, resume after SIGKILL, one-line errors."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

import train as recipe
from conftest import ROOT, write_bin_layout

QUICK = ["--train-subset", "1536", "--test-subset", "512", "--batch-size", "128", "--max-lr", "5e-3",
         "--no-download", "--no-progress", "--device", "cpu"]


def cli(args, cifar_dir, **kw):
    env = {**os.environ, "CIFAR10_DIR": str(cifar_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_train_py_writes_valid_metrics_json(cifar_dir, tmp_path):
    out = tmp_path / "run"
    p = cli([*QUICK[:6], "--no-download", "--no-progress", "--device", "cpu", "--epochs", "2", "--lr-finder-iters", "30",
             "--out", str(out)], cifar_dir)  # no --max-lr: the range test runs; the CPU named, so a GPU machine checks the same
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    m = json.loads((out / "metrics.json").read_text())
    for key in ("config", "params", "device", "wall_s", "final_test_acc", "history", "lr_finder"):
        assert key in m
    assert m["params"] == 26_074 and m["device"] == "cpu" and m["config"]["train_subset"] == 1536
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    for h in m["history"]:
        assert set(h) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr"} and h["lr"] > 0
    assert m["final_test_acc"] == m["history"][-1]["test_acc"]
    assert m["max_lr"] == m["lr_finder"]["suggested"] > 0 and m["config"]["lr_finder_iters"] == 30
    for png in ("curves.png", "lr_finder.png", "confusion.png", "attention.png"):
        assert (out / png).stat().st_size > 1000
    assert "Epoch  2/2" in stdout
    assert stderr == ""  # --no-progress: no bar at all, the LR range test's included


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_run_killed_mid_epoch_resumes_to_the_same_result(cifar_dir, tmp_path, precision):
    args = [*QUICK, "--epochs", "3", "--precision", precision]
    if precision == "fp16":  # emulated on a CPU (10-100x slower): 4 small steps an epoch
        args += ["--train-subset", "128", "--test-subset", "32", "--batch-size", "32"]
    whole = cli([*args, "--out", str(tmp_path / "whole")], cifar_dir)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    killed = cli([*args, "--out", str(tmp_path / "cut")], cifar_dir)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline:  # epoch 1 done: now inside epoch 2
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert len(torch.load(ckpt, weights_only=True)["history"]["epochs"]) == 1  # killed during epoch 2

    resumed = cli([*args, "--out", str(tmp_path / "cut"), "--resume"], cifar_dir)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed from" in stdout
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert len(b["history"]) == 3
    for ra, rb in zip(a["history"], b["history"]):
        assert ra.keys() == rb.keys()
        assert all(abs(ra[k] - rb[k]) <= 1e-6 for k in ra)
    assert a["step_lrs"] == b["step_lrs"]
    ca, cb = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("whole", "cut"))
    wa, wb = ca["model"], cb["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6, rtol=0) for k in wa)
    assert ca["scaler"] == cb["scaler"]  # fp16: the gradient scaler's state carried over the kill


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--batch-size", "-4"], "batch_size must be a positive integer"),
    (["--max-lr", "-0.1"], "max_lr must be >= 0, got -0.1"),
    (["--epochs", "many"], "option 'epochs' takes an integer, got 'many'"),
    (["--lr-rule", "min/x"], "unknown LR rule 'min/x'"),
    (["--warmup-frac", "1.5"], "warmup_frac must be in [0, 1)"),
    (["--precision", "fp8"], "precision must be one of"),
    (["--augment", "crop,rotate"], "unknown augmentation(s) ['rotate']"),
    (["--model", "dropout=0.1"], "unknown model option(s) ['dropout']"),
    (["--model", "residual=maybe"], "model option 'residual' takes true or false, got 'maybe'"),
    (["--model", "strides=two,2,1"], "model option 'strides' takes three positive integers"),
    (["--model", "token_blocks=all"], "model option 'token_blocks' takes an integer, got 'all'"),
    (["--model", "token_blocks=5"], "token_blocks must be 0-4"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--device", "cuda"], "no usable CUDA GPU"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_options_get_one_line_errors(args, message, capsys, cifar_dir, tmp_path):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = recipe.main([*args, "--data-dir", str(cifar_dir), "--no-download", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


def test_help_names_what_a_preset_changes_and_the_command_line_trains_it(capsys):
    """--help lists each preset's own settings beside the defaults, and --preset tokens gets them with no other flag."""
    with pytest.raises(SystemExit):
        recipe.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: safe; --preset tokens: min/5; --preset distilled: min/5)" in text
    assert "(default: flip; --preset course: none; --preset tokens: crop2,flip; --preset distilled: crop2,flip)" in text
    assert "(default: ''; --preset distilled: runs/teacher/logits.pt)" in text
    cfg = recipe.config_from_args(recipe.parser().parse_args(["--preset", "tokens"]))
    assert (cfg.lr_rule, cfg.augment) == ("min/5", ("crop2", "flip"))
    assert recipe.config_from_args(recipe.parser().parse_args(["--preset", "tokens", "--augment", "flip"])).augment == ("flip",)


def test_missing_data_folder_gets_one_line_error(tmp_path, capsys):
    code = recipe.main(["--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CIFAR-10 in" in err and "nowhere" in err


def test_corrupt_batch_file_gets_one_line_error_from_the_command_line(tmp_path):
    d = write_bin_layout(tmp_path / "data", n=10)
    (d / "data_batch_4.bin").write_bytes((d / "data_batch_4.bin").read_bytes()[:-1])
    p = cli(["--data-dir", str(tmp_path / "data"), "--no-download", "--out", str(tmp_path / "o")], tmp_path)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 2
    assert stderr.strip().splitlines() == [stderr.strip()] and "data_batch_4.bin: truncated or corrupt" in stderr
    assert "Traceback" not in stderr


def test_ctrl_c_says_where_it_stopped_and_the_printed_command_resumes(cifar_dir, tmp_path):
    out = tmp_path / "run"
    args = [*QUICK, "--epochs", "3", "--out", str(out)]
    # as in a terminal: SIGINT raises KeyboardInterrupt (a job started in the background, as CI may start
    # this suite, inherits SIGINT ignored)
    p = cli(args, cifar_dir, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline:  # epoch 1 done: now inside epoch 2
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130
    line, = stderr.strip().splitlines()
    assert line.startswith("interrupted in epoch 2; the checkpoint after epoch 1 is ") and "Traceback" not in stderr
    assert len(torch.load(ckpt, weights_only=True)["history"]["epochs"]) == 1
    again = shlex.split(line.split("continue with: ", 1)[1])
    assert again[:2] == ["python", "train.py"] and again[-1] == "--resume"
    resumed = cli(again[2:], cifar_dir)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed from" in stdout and "Epoch  3/3" in stdout


def test_an_output_folder_that_cannot_be_written_is_one_line(cifar_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = recipe.main([*QUICK, "--data-dir", str(cifar_dir), "--out", str(tmp_path / "file" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: cannot write to the output folder") and "file/run" in err


def test_train_py_imports_where_resource_does_not_exist(tmp_path):
    """Windows has no `resource` module: train.py and the benchmarks still import."""
    code = "import sys; sys.modules['resource'] = None; import train, benchmarks.common, benchmarks.accuracy; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_accuracy_rows_split_over_processes_merge_into_one(tmp_path):
    """A row run as seeds 0-1 in one process and seed 2 in another is one 3-seed row, as if run together."""
    from benchmarks import accuracy

    def part(seeds, accs, sec):
        return {"x": {"name": "x", "config": {"preset": "default", "seed": seeds[-1]}, "machine": "m", "seeds": seeds,
                      "test_acc": accs, "max_lr": [0.01] * len(seeds), "histories": [[]] * len(seeds),
                      "sec_per_epoch": sec, "params": 1, "change": "c", "data": "d", "mean": 0, "std": 0}}
    (tmp_path / "b.json").write_text(json.dumps(part([2], [78.0], 9.0)))
    (tmp_path / "a.json").write_text(json.dumps(part([0, 1], [76.0, 77.0], 6.0)))
    out = tmp_path / "all.json"
    assert accuracy.main(["--merge", str(tmp_path / "b.json"), str(tmp_path / "a.json"), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["x"]
    assert row["seeds"] == [0, 1, 2] and row["test_acc"] == [76.0, 77.0, 78.0]
    assert row["mean"] == 77.0 and row["std"] == 1.0 and row["sec_per_epoch"] == 7.0
    assert row["sec_per_epoch_by_seed"] == {"2": 9.0}  # a one-seed part's own time; a two-seed mean is not split
    other = part([3], [70.0], 6.0)
    other["x"]["machine"] = "another"
    (tmp_path / "c.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="differ in configuration, machine or teacher"):
        accuracy.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(out)])
    other["x"].update(machine="m", cpu_capability="AVX512")  # same CPU name, another instruction set (AVX2 vs AVX512)
    (tmp_path / "c.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="differ in configuration, machine or teacher"):
        accuracy.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(out)])
    other["x"].pop("cpu_capability")
    other["x"]["teacher_name"] = "another teacher's logits at the same path"
    (tmp_path / "c.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="differ in configuration, machine or teacher"):
        accuracy.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(out)])


def test_the_range_test_takes_no_random_number_so_a_fixed_lr_row_can_skip_it(cifar_dir, monkeypatch):
    """accuracy.py skips the range test when a row fixes its max LR; the random stream that training then sees is
    the same as after a range test, because the test restores the model and draws nothing from the generators."""
    from benchmarks import accuracy
    cfg = recipe.recipe(train_subset=256, test_subset=128, epochs=1, device="cpu", data_dir=str(cifar_dir),
                        download=False, lr_finder_iters=5)
    run = recipe.setup(cfg, verbose=False)
    before = torch.get_rng_state()
    recipe.find_max_lr(run, progress=False)
    assert torch.equal(torch.get_rng_state(), before)

    def no_range_test(*a, **k):
        raise AssertionError("the range test ran for a row with a fixed max LR")
    monkeypatch.setattr(accuracy, "find_max_lr", no_range_test)
    row = accuracy.run_seed(recipe.recipe(**{**cfg.__dict__, "max_lr": 1e-3}), "fixed", "c")
    assert row["max_lr"] == [1e-3] and len(row["histories"][0]) == 1


def test_a_row_with_a_teacher_trains_on_its_mixed_labels_and_records_the_weight_average(cifar_dir, tmp_path):
    """teacher=FILE replaces the training labels by (1 - share) one-hot + share teacher softmax; an "ema" row evaluates
    the weights' moving average beside the trained weights (a different network, so its own accuracy)."""
    from benchmarks import accuracy
    from utils.training import soft_labels
    labels = torch.tensor([0, 3])
    logits = torch.tensor([[4.0, 0, 0, 0], [0, 0, 0, 8.0]])
    soft = soft_labels(labels, logits, share=0.5, temperature=2.0)
    assert torch.allclose(soft.sum(1), torch.ones(2)) and soft.argmax(1).tolist() == [0, 3]
    assert torch.allclose(soft[0], 0.5 * F.one_hot(labels, 4)[0] + 0.5 * (logits[0] / 2).softmax(0))
    teacher = torch.randn(50_000, 10)
    torch.save(teacher, tmp_path / "logits.pt")
    (tmp_path / "teacher.json").write_text('{"name": "a random teacher", "test_acc": 10.0}')
    cfg = recipe.recipe(train_subset=256, test_subset=128, epochs=1, device="cpu", data_dir=str(cifar_dir),
                        download=False, max_lr=1e-3, teacher=str(tmp_path / "logits.pt"))
    run = recipe.setup(cfg, verbose=False)
    hard = recipe.setup(recipe.recipe(**{**cfg.__dict__, "teacher": ""}), verbose=False).train_loader.labels
    assert torch.equal(run.train_loader.labels, soft_labels(hard, teacher[:256], 0.5, 3.0))
    row = accuracy.run_seed(cfg, "distilled", "c", ema=0.9)
    assert row["config"]["teacher"] == str(tmp_path / "logits.pt") and len(row["histories"][0]) == 1
    assert row["teacher_name"] == "a random teacher"  # which teacher's logits, when several have been made
    assert len(row["ema_test_acc"]) == 1 and 0 <= row["ema_test_acc"][0] <= 100


def test_the_distilled_preset_without_its_teacher_says_how_to_make_it_in_one_line(tmp_path, cifar_dir):
    done = subprocess.run([sys.executable, "train.py", "--preset", "distilled", "--teacher", str(tmp_path / "none.pt"),
                           "--data-dir", str(cifar_dir), "--out", str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no teacher logits at" in done.stderr and "python -m benchmarks.teacher" in done.stderr
    assert recipe.recipe("distilled").teacher == recipe.TEACHER


def test_the_teacher_script_writes_logits_for_every_training_image_and_names_its_teacher(cifar_dir, tmp_path):
    """benchmarks/teacher.py on a slice: one row of logits per training image, the teacher's name beside them
    (what accuracy.py records in a distilled row), its row in the results file; a smoke run has a name of its own."""
    from benchmarks import teacher
    args = ["--epochs", "1", "--train-subset", "600", "--test-subset", "300", "--width", "4", "--data-dir", str(cifar_dir),
            "--out", str(tmp_path / "t"), "--results", str(tmp_path / "rows.json")]
    assert teacher.main(args) == 0
    logits = torch.load(tmp_path / "t" / "logits.pt", weights_only=True)
    name = json.loads((tmp_path / "t" / "teacher.json").read_text())["name"]
    assert logits.shape == (600, 10) and logits.device.type == "cpu" and torch.isfinite(logits).all()
    assert name == "ResNet-9 width 4, 1 epochs, first 600 training images, first 300 test images"
    assert json.loads((tmp_path / "rows.json").read_text())[name]["test_subset"] == 300
    assert name != teacher.name(teacher.parser().parse_args([]))  # never the preset's teacher's row


def test_the_teacher_script_says_what_is_wrong_in_one_line():
    done = subprocess.run([sys.executable, "-m", "benchmarks.teacher", "--device", "tpu9"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 1 and done.stderr == "error: unknown device 'tpu9'; use 'auto', 'cpu', 'cuda' or 'mps'\n"
