"""Train the ULTIMUS network on CIFAR-10: the recipe the notebook runs, and its command line.

    python train.py                          # 24 epochs of the default preset, max LR from the LR range test
    python train.py --preset tokens          # attention over the 64 positions, with its own recipe
    python train.py --train-subset 2000 --epochs 2 --out runs/quick
    python train.py --out runs/a --resume    # continue an interrupted run

Writes into --out: metrics.json, checkpoint.pt, lr_finder.json and the plots.
"""
import argparse
import inspect
import json
import os
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

OUT = "runs/latest"  # the command line's run folder


def interrupted(args, message, saved):
    """The one line a Ctrl-C ends in: the command that continues this run's saved epochs, or that starts it again."""
    again = shlex.join(["python", "train.py", *[x for x in args if x != "--resume"], *(["--resume"] if saved else [])])
    print(f"{message}; continue with: {again}" if saved else
          f"{message}; no epoch of this run was saved, start again with: {again}", file=sys.stderr)
    return 130


def interrupted_at_start(args):
    """interrupted() for a Ctrl-C before main() runs: with --resume, the checkpoint in --out is this run's."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", default=OUT)
    p.add_argument("--resume", action="store_true")
    a, _ = p.parse_known_args(args)
    saved = Path(a.out) / "checkpoint.pt"
    saved = saved if a.resume and saved.exists() else None
    return interrupted(args, "interrupted while starting" + (f"; the checkpoint is {saved}" if saved else ""), saved)


try:  # a Ctrl-C while torch loads (a few seconds) is one line too
    import torch

    from analysis import plot_attention_maps, report
    from models import Net, count_parameters
    from models.checks import check_types, from_dict
    from models.model_9 import ModelConfig
    from models.teacher import RECIPE, save_logits, teacher_name, train_teacher
    from utils import plots
    from utils.data import CLASSES, DataError, Loader, check_augment, load_cifar10
    from utils.device import compile_mode, grad_scaler, optimizer_kwargs, pick_device, precision_for
    from utils.lr_finder import check_rule, find_lr
    from utils.schedule import one_cycle_scheduler
    from utils.training import DTYPES, Checkpoint, DivergenceError, evaluate, health, soft_labels, train_epoch
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    sys.exit(interrupted_at_start(sys.argv[1:]))

TEACHER = "runs/teacher/logits.pt"  # the distilled preset's teacher's logits: trained there on first use (make_teacher)

# the course write-up's network: 25,882 parameters, no batch norm, no residual, A = 32, softmax(QK) / sqrt 8
REFERENCE = ModelConfig(batch_norm=False, residual=False, strides=(1, 1, 1), downsample="stride", scale="after")
# Each preset: its network, and what it trains with besides RunConfig's defaults (docs/results.md has their rows).
PRESETS = {
    "default": {"model": ModelConfig()},  # four blocks over the pooled vector's 8 numbers: 26,074 parameters
    "reference": {"model": REFERENCE},  # the course write-up's network under this repository's recipe
    "course": {"model": REFERENCE, "batch_size": 256, "max_lr": 1.07e-3, "warmup_frac": 0.3, "start_div": 40.0,
               "final_div": 1e4, "grad_clip": 0.0, "augment": ()},  # the recipe its published log shows (course/)
    "tokens": {"model": ModelConfig(token_blocks=4, positions=True),  # the same weights over the 64 positions
               "lr_rule": "min/5", "augment": ("crop2", "flip")},  # a lower max LR, +-2-pixel shifts
    "distilled": {"model": ModelConfig(token_blocks=4, positions=True), "lr_rule": "min/5", "augment": ("crop2", "flip"),
                  "teacher": TEACHER},  # the tokens recipe, its labels mixed with a convolutional teacher's predictions
}


@dataclass
class RunConfig:
    """Every setting of a run, with its default; recipe(preset, ...) adds the preset's own settings."""
    preset: str = "default"  # the network and its training settings: "default", "tokens", "distilled", "reference" or "course"
    model: dict = field(default_factory=dict)  # changes to the preset's ModelConfig, e.g. residual=false
    epochs: int = 24  # epochs of the one-cycle schedule
    batch_size: int = 128  # images per training step
    max_lr: float = 0.0  # the one-cycle peak LR; 0: take it from the LR range test
    lr_rule: str = "safe"  # how the range test's curve gives max_lr: "safe", "min/N" or "steepest" (utils/lr_finder.py)
    lr_finder_iters: int = 100  # steps of the LR range test
    warmup_frac: float = 5 / 24  # the share of the steps that warm the LR up to its peak (5 of 24 epochs)
    start_div: float = 10.0  # the one-cycle LR starts at max_lr / start_div
    final_div: float = 1000.0  # and ends, at the last step, at max_lr / final_div
    adam_eps: float = 1e-8  # Adam's epsilon: each step is lr * m / (sqrt(v) + adam_eps)
    grad_clip: float = 1.0  # gradients scaled down to at most this total norm before each step (0: off)
    augment: tuple = ("flip",)  # any of "crop" or "crop2" (+-4 or +-2-pixel shifts) and "flip" (utils/data.py)
    teacher: str = ""  # a teacher's logits on the training images (the preset's trained on first use); "": labels alone
    teacher_share: float = 0.5  # with a teacher, each label is (1 - share) x one-hot + share x the teacher's softmax
    temperature: float = 3.0  # the temperature of the teacher's softmax (higher: softer)
    train_subset: int = 0  # 0: all 50,000 training images; N: the first N (quick runs)
    test_subset: int = 0  # 0: all 10,000 test images; N: the first N
    seed: int = 0  # seeds the model's initialisation and the data order
    device: str = "auto"  # "auto" (cuda > mps > cpu), "cpu", "cuda", "mps"
    precision: str = "auto"  # "auto" (what the hardware runs natively), "bf16", "fp16", "fp32"
    channels_last: bool = True  # NHWC activations for the convolutions
    compile: bool = False  # torch.compile the model (CUDA graphs on CUDA); on the CPU it is slower for A = 8
    data_dir: str = ""  # folder with cifar-10-batches-bin/; "": $CIFAR10_DIR, else ./data
    download: bool = True  # download with torchvision when the folder has no CIFAR-10

    def __post_init__(self):
        check_types(self, "option", {"preset": tuple(PRESETS), "precision": ("auto", *DTYPES)})
        self.augment = tuple(self.augment)
        self.model_config()  # rejects unknown model keys and bad values
        check_rule(self.lr_rule)
        check_augment(self.augment)
        count, size = "a positive integer", ">= 0"
        ranges = {"epochs": (self.epochs >= 1, count), "batch_size": (self.batch_size >= 1, count),
                  "lr_finder_iters": (self.lr_finder_iters >= 1, count), "max_lr": (self.max_lr >= 0, size),
                  "grad_clip": (self.grad_clip >= 0, size), "train_subset": (self.train_subset >= 0, size),
                  "test_subset": (self.test_subset >= 0, size), "warmup_frac": (0 <= self.warmup_frac < 1, "in [0, 1)"),
                  "start_div": (self.start_div >= 1, ">= 1"), "final_div": (self.final_div >= 1, ">= 1"),
                  "adam_eps": (self.adam_eps > 0, "> 0"),
                  "teacher_share": (0 <= self.teacher_share <= 1, "in [0, 1]"), "temperature": (self.temperature > 0, "> 0")}
        for name, (ok, allowed) in ranges.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

    def model_config(self):
        return from_dict(ModelConfig, {**asdict(PRESETS[self.preset]["model"]), **self.model}, "model option")

    def resume_settings(self, precision=None):
        """What must match for a checkpoint to be resumed (precision: the one used; "auto" differs by machine)."""
        unused = ("device", "data_dir", "download") + (() if self.teacher else ("teacher", "teacher_share", "temperature"))
        d = {k: v for k, v in asdict(self).items() if k not in unused}  # no teacher: as before the teacher existed
        return d | {"augment": list(self.augment), "precision": precision or self.precision}


def recipe(preset="default", **changes):
    """The RunConfig of a preset: RunConfig's defaults, then the preset's own settings, then your changes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {list(PRESETS)}")
    own = {k: v for k, v in PRESETS[preset].items() if k != "model"}
    return from_dict(RunConfig, {**own, "preset": preset, **changes})


@dataclass
class Run:
    """Everything a run needs, built by setup()."""
    cfg: RunConfig
    device: torch.device
    precision: str
    model: torch.nn.Module  # what trains (compiled if cfg.compile)
    net: Net  # the plain module (summary, attention maps, checkpoints)
    train_loader: Loader
    test_loader: Loader
    trained: bool = False  # set by train(): a second train() on the same network would train it on
    checkpoint: Path = None  # set by train() once the file there holds this run's epochs (or will)

    def resume_settings(self):
        return self.cfg.resume_settings(self.precision)


def setup(cfg, verbose=True):
    """Device, seed, data and model for cfg."""
    device = pick_device(cfg.device, verbose=verbose)
    precision = precision_for(device) if cfg.precision == "auto" else cfg.precision
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
    torch.manual_seed(cfg.seed)
    x_train, y_train = load_cifar10(cfg.data_dir or None, train=True, download=cfg.download)
    x_test, y_test = load_cifar10(cfg.data_dir or None, train=False, download=cfg.download)
    x_train, y_train = x_train[: cfg.train_subset or None], y_train[: cfg.train_subset or None]
    x_test, y_test = x_test[: cfg.test_subset or None], y_test[: cfg.test_subset or None]
    if cfg.teacher:  # distillation: the training labels become the mix soft_labels makes
        y_train = soft_labels(y_train, load_teacher(cfg.teacher, len(y_train)), cfg.teacher_share, cfg.temperature)
    kw = dict(batch_size=cfg.batch_size, device=device, seed=cfg.seed, channels_last=cfg.channels_last)
    train_loader = Loader(x_train, y_train, train=True, augment=cfg.augment, **kw)
    test_loader = Loader(x_test, y_test, **kw)
    net = Net(cfg.model_config()).to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    model = torch.compile(net, mode=compile_mode(device)) if cfg.compile else net
    if verbose:
        print(f"precision: {precision}; {len(y_train):,} training and {len(y_test):,} test images; "
              f"model: {count_parameters(net):,} parameters")
    return Run(cfg, device, precision, model, net, train_loader, test_loader)


def load_teacher(path, n):
    """The teacher's logits for the first n training images, from make_teacher's (or benchmarks/teacher.py's) file."""
    if not Path(path).is_file():
        raise ValueError(f"no teacher logits at {path}: python train.py --preset distilled trains its teacher at "
                         f"{TEACHER} first, python -m benchmarks.teacher --out FOLDER anywhere; or pass --teacher ''")
    logits = torch.load(path, map_location="cpu", weights_only=True)
    if logits.dim() != 2 or len(logits) < n:
        raise ValueError(f"{path} holds logits of shape {tuple(logits.shape)}, not one row for each of {n} training images")
    return logits[:n]


def unwritable(folder):
    """Why files cannot be written into folder (made if missing), or None when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".writable").write_text("")
        (folder / ".writable").unlink()
    except OSError as e:
        return e.strerror or str(e)


def make_teacher(cfg, progress=True, **changes):
    """Train the distilled preset's teacher (models/teacher.py's RECIPE, with changes) on all the training images, on
    cfg's device: its logits saved at cfg.teacher and its name in teacher.json beside, for every later run."""
    settings = RECIPE | changes
    device = pick_device(cfg.device, verbose=False)
    x, y = load_cifar10(cfg.data_dir or None, train=True, download=cfg.download)
    x_test, y_test = load_cifar10(cfg.data_dir or None, train=False, download=cfg.download)
    folder = Path(cfg.teacher).parent
    if why := unwritable(folder):  # one line, before the teacher trains
        raise ValueError(f"cannot write the teacher's logits to {folder}: {why}")
    name = teacher_name(settings["width"], settings["epochs"])
    print(f"no teacher logits at {cfg.teacher}: training the teacher first ({name}, {len(y):,} images, on {device}); "
          "its logits are kept there for later runs")
    _, logits, history = train_teacher(x, y, x_test, y_test, **settings, device=device, precision=precision_for(device),
                                       progress=progress)
    save_logits(cfg.teacher, logits, name, history[-1]["test_acc"])
    print(f"teacher: {history[-1]['test_acc']:.2f}% on the test set; its logits are in {cfg.teacher}")


def make_optimizer(run, lr):
    """Adam over the network's parameters, fused where torch has it."""
    return torch.optim.Adam(run.net.parameters(), lr=lr, eps=run.cfg.adam_eps, **optimizer_kwargs(run.device))


def find_max_lr(run, out_dir=None, resume=False, progress=True):
    """The LR range test on the training data; saves lr_finder.json (and reuses it on resume)."""
    saved = Path(out_dir) / "lr_finder.json" if out_dir else None
    if resume and saved and saved.exists():
        result = json.loads(saved.read_text())
        if result.get("settings") == run.resume_settings():
            return result
    result = find_lr(run.model, make_optimizer(run, 1e-5), torch.nn.functional.cross_entropy, run.train_loader,
                     num_iter=run.cfg.lr_finder_iters, amp_dtype=DTYPES[run.precision], rule=run.cfg.lr_rule,
                     progress=progress)
    result["settings"] = run.resume_settings()
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(result))
    return result


ADVICE = {  # what to do about each problem utils.training.health() names
    "chance": "try a lower max LR or the 'min/10' LR rule; README.md, 'Why the reference stayed at 10%', explains it",
    "degrading": "the max LR is most often too high for this network: run again with a lower one or the 'safe' LR rule",
}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or the notebook's stop button) during a run; .checkpoint: the file with this run's epochs, or None."""

    def __init__(self, message, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint


def train(run, max_lr, out_dir=None, resume=False, progress=True, log=print, stop_after=None):
    """cfg.epochs epochs of one-cycle training, evaluated after each; returns the history. With out_dir, a checkpoint
    is saved there after each epoch and resume=True continues from it (without resume, any left there is removed).
    stop_after=N: stop after epoch N of the cfg.epochs-long schedule (the first epochs of the same run)."""
    path = Path(out_dir) / "checkpoint.pt" if out_dir else None
    if run.trained and not (resume and path and path.exists()):  # it would train the trained network on
        raise ValueError("this network has been trained already: build a fresh one with setup(cfg)"
                         + ("" if resume else ", or continue from its checkpoint with resume=True"))
    ckpt = Checkpoint(path, run.resume_settings(), resume) if path else None
    run.checkpoint = path
    optimizer = make_optimizer(run, max_lr)
    scheduler = one_cycle_scheduler(optimizer, max_lr, run.cfg.epochs, len(run.train_loader), run.cfg.warmup_frac,
                                    run.cfg.start_div, run.cfg.final_div)
    scaler = grad_scaler(run.device, run.precision)
    history = {"epochs": [], "step_lrs": [], "epoch_seconds": []}
    if ckpt and ckpt.path.exists():
        history = ckpt.load(run.net, optimizer, scheduler, scaler)  # a ValueError leaves the run retryable
        log(f"resumed from {ckpt.path} after epoch {len(history['epochs'])}")
    elif resume:
        log(f"no checkpoint in {out_dir}: training from epoch 1")
    run.trained, warned, saved_epochs = True, set(), len(history["epochs"])
    last = min(stop_after or run.cfg.epochs, run.cfg.epochs)  # stop_after: the schedule's first epochs only
    for epoch in range(len(history["epochs"]) + 1, last + 1):
        try:
            t0 = time.perf_counter()
            run.train_loader.set_epoch(epoch)
            tr = train_epoch(run.model, run.train_loader, optimizer, scheduler, grad_clip=run.cfg.grad_clip,
                             precision=run.precision, scaler=scaler, progress=progress)
            te = evaluate(run.model, run.test_loader, precision=run.precision)
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": te["loss"],
                   "test_acc": te["acc"], "lr": tr["lrs"][-1]}
            history = {"epochs": history["epochs"] + [row], "step_lrs": history["step_lrs"] + tr["lrs"],
                       "epoch_seconds": history["epoch_seconds"] + [time.perf_counter() - t0]}
            if ckpt:
                ckpt.save(run.net, optimizer, scheduler, scaler, history)
                saved_epochs = epoch
        except (KeyboardInterrupt, DivergenceError) as e:  # say which epoch, and what this run's checkpoint holds
            saved = ckpt.path if ckpt and ckpt.path.exists() else None
            kept = f"; the checkpoint after epoch {saved_epochs} is {saved}" if saved else ""
            if isinstance(e, DivergenceError):
                raise DivergenceError(f"epoch {epoch}: {e}{kept}") from None
            raise Interrupted(f"interrupted in epoch {epoch}{kept}", saved) from None
        log(f"Epoch {epoch:2d}/{run.cfg.epochs}  LR {row['lr']:.3e}  train loss {tr['loss']:.4f} acc {tr['acc']:5.2f}%  "
            f"test loss {te['loss']:.4f} acc {te['acc']:5.2f}%  ({history['epoch_seconds'][-1]:.1f}s)")
        for name, message in health(history["epochs"], len(CLASSES)).items():
            if name not in warned:
                warned.add(name)
                log(f"warning: {message}, at LR {row['lr']:.2e} (peak LR {max(history['step_lrs']):.2e}); {ADVICE[name]}")
    return history


def metrics_of(run, history, max_lr, lr_result, wall_s, analysis=None):
    """The summary of a finished run, as written to metrics.json (analysis: report's result)."""
    last = history["epochs"][-1]
    return {
        "config": asdict(run.cfg) | {"augment": list(run.cfg.augment)}, "model_config": asdict(run.net.config),
        "params": count_parameters(run.net), "device": str(run.device),
        "precision": run.precision, "torch": torch.__version__, "max_lr": max_lr,
        "lr_finder": {k: lr_result[k] for k in ("suggested", "steepest", "diverged")} if lr_result else None,
        "final_test_acc": last["test_acc"], "final_test_loss": last["test_loss"], "wall_s": wall_s,
        "train_s": sum(history["epoch_seconds"]), **(analysis or {}),
        "history": history["epochs"], "step_lrs": history["step_lrs"], "epoch_seconds": history["epoch_seconds"],
    }


def train_and_report(cfg, out_dir=OUT, resume=False, progress=True, images=True):
    """[the preset's teacher, if its logits are missing] -> setup -> LR range test (unless cfg.max_lr) -> train ->
    plots -> metrics.json; returns the metrics. A Ctrl-C anywhere becomes Interrupted, naming this run's checkpoint
    when there is one to resume."""
    t0, run, stage = time.perf_counter(), None, "setting up"
    try:
        if Path(cfg.teacher) == Path(TEACHER) and not Path(TEACHER).is_file():  # the distilled preset's, trained once
            stage = "training the teacher"
            make_teacher(cfg, progress)
            stage = "setting up"
        run = setup(cfg)  # fails early, before anything is written, on a bad device or data folder
        out = Path(out_dir)
        if why := unwritable(out):  # one line, before any training
            raise ValueError(f"cannot write to the output folder {out}: {why}; choose another with --out")
        lr_result = None
        if not cfg.max_lr:
            stage = "the LR range test"
            lr_result = find_max_lr(run, out, resume, progress)
            print(f"LR range test: max LR {lr_result['suggested']:.3e} (rule {cfg.lr_rule}); "
                  f"steepest slope at {lr_result['steepest'] or 0:.3e}")
        max_lr = cfg.max_lr or lr_result["suggested"]
        stage = "training"
        history = train(run, max_lr, out, resume=resume, progress=progress)
        stage = "drawing the figures"
        analysis = None
        if images:
            plots.plot_curves(history, out / "curves.png")
            if lr_result:
                plots.plot_lr_finder(lr_result, out / "lr_finder.png")
            analysis = report(run, out)
            plot_attention_maps(run, out)
        stage = "writing metrics.json"
        metrics = metrics_of(run, history, max_lr, lr_result, time.perf_counter() - t0, analysis)
        (out / "metrics.json.tmp").write_text(json.dumps(metrics, indent=1))
        os.replace(out / "metrics.json.tmp", out / "metrics.json")
    except Interrupted:
        raise
    except KeyboardInterrupt:  # the file is this run's if it resumes it, or once train() has begun
        path = Path(out_dir) / "checkpoint.pt"
        saved = path if path.exists() and (resume or (run and run.checkpoint)) else None
        raise Interrupted(f"interrupted while {stage}" + (f"; the checkpoint is {saved}" if saved else ""),
                          saved) from None
    print(f"final test accuracy {metrics['final_test_acc']:.2f}% after {len(history['epochs'])} epochs; "
          f"{metrics['wall_s']:.0f}s in all; wrote {out / 'metrics.json'}")
    return metrics


def _parse_value(text):
    """'true' -> True, '3' -> 3, '0.5' -> 0.5, 'a,b' -> ['a', 'b'], anything else stays text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "," in text:
        return [_parse_value(t) for t in text.split(",")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _shown(value, kind):
    """A setting as --help prints it: a tuple joined by commas, a float in 4 digits."""
    return (",".join(value) or "none") if kind is tuple else f"{value:.4g}" if kind is float else str(value or repr(value))


def parser():
    """The command line: one option per RunConfig field (its type, default and comment), then the run's own."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lines = inspect.getsource(RunConfig).splitlines()  # the help is the dataclass's own comments
    comments = {m[1]: m[2] for m in (re.match(r"\s+(\w+): \w+ = .*?  # (.*)$", line) for line in lines) if m}
    defaults = RunConfig()
    for f in fields(RunConfig):
        shown = "; ".join([_shown(getattr(defaults, f.name), f.type)] + [f"--preset {k}: {_shown(r[f.name], f.type)}"
                                                                        for k, r in PRESETS.items() if f.name in r])
        text = f"{comments.get(f.name, '')} (default: {shown})".replace("%", "%%")
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        elif f.type is dict:
            p.add_argument(flag, nargs="*", metavar="KEY=VALUE", default=argparse.SUPPRESS, help=text)
        elif f.type is tuple:  # "crop2,flip" -> ("crop2", "flip"); "none" or "" -> ()
            p.add_argument(flag, metavar="A,B", default=argparse.SUPPRESS, help=text + "; 'none' for none",
                           type=lambda t: () if t in ("", "none") else tuple(x.strip() for x in t.split(",")))
        else:  # the value's type is checked by RunConfig, in one line
            p.add_argument(flag, type=str if f.type is str else _parse_value, default=argparse.SUPPRESS, help=text)
    p.add_argument("--out", default=OUT, help="run folder for metrics.json, checkpoint and plots (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(a):
    """The RunConfig of parsed arguments: the preset's recipe, then only the options given."""
    given = {k: v for k, v in vars(a).items() if k not in ("out", "resume", "no_progress")}
    if "model" in given:
        bad = [kv for kv in given["model"] if "=" not in kv]
        if bad:
            raise ValueError(f"--model takes KEY=VALUE, got {bad[0]!r}")
        given["model"] = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in given["model"])}
    return recipe(**given)


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        a = parser().parse_args(args)
        train_and_report(config_from_args(a), a.out, resume=a.resume, progress=not a.no_progress)
    except KeyboardInterrupt as e:  # this run's saved epochs are continued with --resume; with none, start again
        return interrupted(args, str(e) or "interrupted", getattr(e, "checkpoint", None))
    except (ValueError, DataError, DivergenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, DivergenceError) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
