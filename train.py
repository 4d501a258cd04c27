"""Train the ULTIMUS network on CIFAR-10: the recipe the notebook runs, and its command line.

    python train.py                          # 24 epochs, best configuration, LR range test
    python train.py --train-subset 2000 --epochs 2 --out runs/quick
    python train.py --out runs/a --resume    # continue an interrupted run

Writes into --out: metrics.json, checkpoint.pt, lr_finder.json and the plots.
"""
import argparse
import inspect
import json
import platform
import re
import shlex
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch

from models import PRESETS, Net, count_parameters
from models.checks import check_types, from_dict
from models.model_9 import ModelConfig
from utils import plots
from utils.data import CLASSES, DataError, Loader, check_augment, data_label, load_cifar10
from utils.device import compile_mode, grad_scaler, optimizer_kwargs, pick_device, precision_for, set_seed
from utils.lr_finder import check_rule, find_lr
from utils.schedule import one_cycle_scheduler
from utils.training import Checkpoint, DivergenceError, confusion_matrix, evaluate, health, predict, train_epoch


def peak_memory_mib():
    """Peak resident memory of this process in MiB, or None where the platform cannot say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


# What each preset trains with besides its network (models.PRESETS): one visible place, applied by recipe().
RECIPES = {
    "best": {},  # RunConfig's defaults
    "reference": {},
    # attention over positions trains best at a lower max LR, with +-2-pixel shifts (docs/attention_over_positions.md)
    "tokens": {"lr_rule": "min/5", "augment": ("crop2", "flip")},
}


@dataclass
class RunConfig:
    """Every setting of a run, with its default; recipe(preset, ...) adds the preset's own settings."""
    preset: str = "best"  # the network, "best", "tokens" or "reference" (models.PRESETS), and its RECIPES entry
    model: dict = field(default_factory=dict)  # changes to the preset's ModelConfig, e.g. residual=false
    epochs: int = 24  # epochs of the one-cycle schedule
    batch_size: int = 128  # images per training step
    max_lr: float = 0.0  # the one-cycle peak LR; 0: take it from the LR range test
    lr_rule: str = "safe"  # how the range test's curve gives max_lr: "safe", "min/N" or "steepest" (utils/lr_finder.py)
    lr_finder_iters: int = 100  # steps of the LR range test
    warmup_frac: float = 5 / 24  # the share of the steps that warm the LR up to its peak (5 of 24 epochs)
    grad_clip: float = 1.0  # gradients scaled down to at most this total norm before each step (0: off)
    augment: tuple = ("flip",)  # any of "crop" or "crop2" (+-4 or +-2 pixels), "flip" or "altflip", "cutout" (utils/data.py)
    train_subset: int = 0  # 0: all 50,000 training images; N: the first N (quick runs)
    test_subset: int = 0  # 0: all 10,000 test images; N: the first N
    seed: int = 0  # seeds the model's initialisation and the data order
    device: str = "auto"  # "auto" (cuda > mps > cpu), "cpu", "cuda", "mps"
    precision: str = "auto"  # "auto" (what the hardware runs natively), "bf16", "fp16", "fp32"
    channels_last: bool = True  # NHWC activations for the convolutions (docs/speed.md)
    compile: bool = False  # torch.compile the model (CUDA graphs on CUDA); on the CPU it is slower for A = 8
    data_dir: str = ""  # folder with cifar-10-batches-bin/ or -py/; "": $CIFAR10_DIR, else ./data
    download: bool = True  # download with torchvision when the folder has no CIFAR-10

    def __post_init__(self):
        check_types(self, "option", {"preset": tuple(PRESETS), "precision": ("auto", "bf16", "fp16", "fp32")})
        self.augment = tuple(self.augment)
        self.model_config()  # rejects unknown model keys and bad values
        check_rule(self.lr_rule)
        check_augment(self.augment)
        for name in ("epochs", "batch_size", "lr_finder_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("max_lr", "grad_clip", "train_subset", "test_subset"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")

    @classmethod
    def from_dict(cls, d):
        """A RunConfig from a dict; unknown keys are an error that names the valid ones."""
        return from_dict(cls, d)

    def model_config(self):
        return ModelConfig.from_dict({**asdict(PRESETS[self.preset]), **self.model})

    def resume_settings(self, precision=None):
        """What must match for a checkpoint to be resumed: everything that changes the result.

        precision: the one actually used ("auto" means another thing on another machine).
        """
        d = asdict(self)
        for k in ("device", "data_dir", "download"):
            d.pop(k)
        d["augment"] = list(self.augment)  # as JSON gives it back
        d["precision"] = precision or self.precision
        return d


def recipe(preset="best", **changes):
    """The RunConfig of a preset: RunConfig's defaults, then RECIPES[preset], then your changes."""
    if preset not in RECIPES:
        raise ValueError(f"unknown preset {preset!r}; choose from {list(RECIPES)}")
    return RunConfig.from_dict({**RECIPES[preset], "preset": preset, **changes})


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
    test_images: torch.Tensor  # uint8, for galleries
    data: str  # what the data are: "CIFAR-10 (official files)" or an unverified copy
    trained: bool = False  # set by train(): a second train() on the same network would train it on

    def resume_settings(self):
        return self.cfg.resume_settings(self.precision)


def setup(cfg, verbose=True):
    """Device, seed, data and model for cfg."""
    device = pick_device(cfg.device, verbose=verbose)
    precision = precision_for(device) if cfg.precision == "auto" else cfg.precision
    if verbose:
        print(f"precision: {precision}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
    set_seed(cfg.seed)
    x_train, y_train = load_cifar10(cfg.data_dir or None, train=True, download=cfg.download)
    x_test, y_test = load_cifar10(cfg.data_dir or None, train=False, download=cfg.download)
    if cfg.train_subset:
        x_train, y_train = x_train[: cfg.train_subset], y_train[: cfg.train_subset]
    if cfg.test_subset:
        x_test, y_test = x_test[: cfg.test_subset], y_test[: cfg.test_subset]
    kw = dict(batch_size=cfg.batch_size, device=device, seed=cfg.seed, channels_last=cfg.channels_last)
    train_loader = Loader(x_train, y_train, train=True, augment=cfg.augment, **kw)
    test_loader = Loader(x_test, y_test, train=False, **kw)
    net = Net(cfg.model_config()).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net, mode=compile_mode(device)) if cfg.compile else net
    data = data_label(cfg.data_dir or None)
    if verbose:
        print(f"data: {data}, {len(y_train):,} training and {len(y_test):,} test images; "
              f"model: {count_parameters(net):,} parameters")
    return Run(cfg, device, precision, model, net, train_loader, test_loader, x_test, data)


def make_optimizer(run, lr):
    """Adam over the network's parameters, fused where torch has it."""
    return torch.optim.Adam(run.net.parameters(), lr=lr, **optimizer_kwargs(run.device))


def find_max_lr(run, out_dir=None, resume=False, progress=True):
    """The LR range test on the training data; saves lr_finder.json (and reuses it on resume)."""
    saved = Path(out_dir) / "lr_finder.json" if out_dir else None
    if resume and saved and saved.exists():
        result = json.loads(saved.read_text())
        if result.get("settings") == run.resume_settings():
            return result
    result = find_lr(run.model, make_optimizer(run, 1e-5), torch.nn.functional.cross_entropy, run.train_loader,
                     precision=run.precision, num_iter=run.cfg.lr_finder_iters,
                     rule=run.cfg.lr_rule, progress=progress)
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
    """Ctrl-C (or the notebook's stop button) during train(); says what this run's checkpoint holds."""


def train(run, max_lr, out_dir=None, resume=False, progress=True, log=print):
    """cfg.epochs epochs of one-cycle training, evaluated after each; returns the history.

    With out_dir, a checkpoint is saved there after each epoch and resume=True continues from it
    (without resume, one left there by another run is removed first).
    """
    path = Path(out_dir) / "checkpoint.pt" if out_dir else None
    if run.trained and not (resume and path and path.exists()):  # it would train the trained network on
        raise ValueError("this network has been trained already: build a fresh one with setup(cfg)"
                         + ("" if resume else ", or continue from its checkpoint with resume=True"))
    run.trained = True
    ckpt = Checkpoint(path, run.resume_settings(), resume) if path else None
    optimizer = make_optimizer(run, max_lr)
    scheduler = one_cycle_scheduler(optimizer, max_lr, run.cfg.epochs, len(run.train_loader), run.cfg.warmup_frac)
    scaler = grad_scaler(run.device, run.precision)
    history = {"epochs": [], "step_lrs": [], "epoch_seconds": []}
    if ckpt and ckpt.exists():
        history = ckpt.load(run.net, optimizer, scheduler, scaler)
        log(f"resumed from {ckpt.path} after epoch {len(history['epochs'])}")
    warned = set()
    for epoch in range(len(history["epochs"]) + 1, run.cfg.epochs + 1):
        t0 = time.perf_counter()
        run.train_loader.set_epoch(epoch)
        try:
            tr = train_epoch(run.model, run.train_loader, optimizer, scheduler, precision=run.precision, scaler=scaler,
                             grad_clip=run.cfg.grad_clip, progress=progress)
            te = evaluate(run.model, run.test_loader, precision=run.precision)
        except (KeyboardInterrupt, DivergenceError) as e:  # say which epoch, and what this run's checkpoint holds
            kept = f"; the checkpoint after epoch {epoch - 1} is {ckpt.path}" if ckpt and ckpt.exists() else ""
            if isinstance(e, DivergenceError):
                raise DivergenceError(f"epoch {epoch}: {e}{kept}") from None
            raise Interrupted(f"interrupted in epoch {epoch}{kept}") from None
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": te["loss"],
               "test_acc": te["acc"], "lr": tr["lrs"][-1]}
        history["epochs"].append(row)
        history["step_lrs"] += tr["lrs"]
        history["epoch_seconds"].append(time.perf_counter() - t0)
        log(f"Epoch {epoch:2d}/{run.cfg.epochs}  LR {row['lr']:.3e}  train loss {tr['loss']:.4f} acc {tr['acc']:5.2f}%  "
            f"test loss {te['loss']:.4f} acc {te['acc']:5.2f}%  ({history['epoch_seconds'][-1]:.1f}s)")
        for name, message in health(history["epochs"], len(CLASSES)).items():
            if name not in warned:
                warned.add(name)
                log(f"warning: {message}, at LR {row['lr']:.2e} (peak LR {max(history['step_lrs']):.2e}); {ADVICE[name]}")
        if ckpt:
            ckpt.save(run.net, optimizer, scheduler, scaler, history)
    return history


@torch.no_grad()
def spread(net, images):
    """How different the images still are, stage by stage: the std over the batch (averaged over the 48 features)
    of X after the pool and after each block, for a network whose blocks all attend over the pooled vector."""
    net.eval()
    x = net.pool(net.feature_map(images).flatten(2).transpose(1, 2))  # X (B, 48)
    stages = [x]
    for block in net.blocks:
        x = x + block(x) if net.config.residual else block(x)
        stages.append(x)
    return [s.std(0).mean().item() for s in stages]  # pool, block 1, ..., block 4


@torch.no_grad()
def attention_entropy(run):
    """Each block's mean attention-row entropy (nats) over the whole test set: ln(keys) is uniform, 0 one-hot."""
    totals, rows = None, 0
    for x, _ in run.test_loader:
        maps = run.net.attention_maps(x)
        h = [-(am * am.clamp_min(1e-12).log()).sum(-1).sum().item() / am.shape[-2] for am in maps]  # per image, summed
        totals = h if totals is None else [a + b for a, b in zip(totals, h)]
        rows += len(x)
    return [t / rows for t in totals]


def plot_training(run, history, lr_result, image_dir, show=False):
    """Loss and accuracy curves, the LR range test and the LR schedule, saved into image_dir."""
    d = Path(image_dir)
    plots.plot_losses(history, d / "losses.png", show)
    plots.plot_accuracies(history, d / "accs.png", show)
    if lr_result:
        plots.plot_lr_finder(lr_result, d / "lr_finder.png", show)
    plots.plot_schedule(history["step_lrs"], len(run.train_loader), d / "lr_schedule.png", show)


def plot_attention_maps(run, image_dir, show=False, titles=None):
    """The attention matrices of the first 4 test images: attention.png (8x8 maps of the blocks over the pooled
    vector) and attention_positions.png (where two positions attend, for the blocks over positions)."""
    images = run.test_images[:4]  # the test loader keeps the order
    maps = run.net.attention_maps(next(iter(run.test_loader))[0][:4])
    titles = titles or [CLASSES[int(y)] for y in run.test_loader.labels[:4]]
    n, d = run.net.config.token_blocks, Path(image_dir)  # the first n blocks attend over positions
    if n:
        plots.plot_position_attention(images, maps[:n], titles, [(4, 4), (1, 1)], d / "attention_positions.png", show)
    if n < 4:
        plots.plot_attention(images, maps[n:], titles, d / "attention.png", show)


def report(run, image_dir, show=False):
    """Per-class accuracy, confusion matrix, misclassified images.

    Returns {"per_class_acc": {class: %}, "test_acc_flip_tta": % with test-time flip averaging}.
    """
    d = Path(image_dir)
    logits, labels = predict(run.model, run.test_loader, precision=run.precision)
    preds = logits.argmax(1)
    tta = predict(run.model, run.test_loader, precision=run.precision, flip=True)[0]
    cm = confusion_matrix(preds, labels, len(CLASSES))
    plots.plot_per_class(cm, CLASSES, d / "per_class.png", show)
    plots.plot_confusion(cm, CLASSES, d / "confusion.png", show)
    wrong = (preds != labels).nonzero().flatten()[:20].cpu()
    plots.plot_gallery(run.test_images[wrong], labels[wrong].tolist(), preds[wrong].tolist(), CLASSES,
                       d / "misclassified.png", show)
    return {"per_class_acc": dict(zip(CLASSES, (100 * cm.diag().float() / cm.sum(1).clamp(min=1)).tolist())),
            "test_acc_flip_tta": 100 * (tta.argmax(1) == labels).float().mean().item()}


def machine_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    if name:
        return f"{name}, {torch.get_num_threads()} threads"
    return platform.processor() or platform.machine()


def metrics_of(run, history, max_lr, lr_result, wall_s, analysis=None):
    """The summary of a finished run, as written to metrics.json (analysis: report's result)."""
    last = history["epochs"][-1]
    return {
        "config": asdict(run.cfg) | {"augment": list(run.cfg.augment)}, "model_config": asdict(run.net.config),
        "params": count_parameters(run.net), "device": str(run.device), "machine": machine_name(run.device),
        "precision": run.precision, "torch": torch.__version__, "data": run.data, "max_lr": max_lr,
        "lr_finder": {k: lr_result[k] for k in ("suggested", "steepest", "diverged")} if lr_result else None,
        "final_test_acc": last["test_acc"], "final_test_loss": last["test_loss"],
        "wall_s": wall_s, "train_s": sum(history["epoch_seconds"]),
        "peak_rss_mib": peak_memory_mib(),
        **(analysis or {}), "history": history["epochs"], "step_lrs": history["step_lrs"],
        "epoch_seconds": history["epoch_seconds"],
    }


def writable_folder(path):
    """Create the run folder and check that a file can be written there; a ValueError says why not."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {out}: {e.strerror or e}; choose another with --out") from None
    return out


def train_and_report(cfg, out_dir="runs/latest", resume=False, progress=True, images=True):
    """setup -> LR range test (unless cfg.max_lr) -> train -> plots -> metrics.json; returns the metrics."""
    t0 = time.perf_counter()
    r = setup(cfg)  # fails early, before anything is written, on a bad device or data folder
    out = writable_folder(out_dir)
    lr_result = None
    if cfg.max_lr:
        max_lr = cfg.max_lr
    else:
        lr_result = find_max_lr(r, out, resume, progress)
        max_lr = lr_result["suggested"]
        print(f"LR range test: suggested max LR {max_lr:.3e} (rule {cfg.lr_rule}); steepest slope at {lr_result['steepest'] or 0:.3e}")
    history = train(r, max_lr, out, resume=resume, progress=progress)
    analysis = None
    try:
        if images:
            plot_training(r, history, lr_result, out)
            analysis = report(r, out)
            plot_attention_maps(r, out)
    except KeyboardInterrupt:  # training is done and saved: --resume goes straight to the figures
        raise Interrupted(f"interrupted after training, while drawing its figures; the checkpoint after epoch "
                          f"{len(history['epochs'])} is {out / 'checkpoint.pt'}") from None
    metrics = metrics_of(r, history, max_lr, lr_result, time.perf_counter() - t0, analysis)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"final test accuracy {metrics['final_test_acc']:.2f}% after {len(history['epochs'])} epochs; "
          f"{metrics['wall_s']:.0f}s in all; wrote {out / 'metrics.json'}")
    return metrics


def _parse_value(text):
    """'true' -> True, '3' -> 3, '0.5' -> 0.5, 'a,b' -> ['a', 'b'], anything else stays text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in text:
        return [_parse_value(t) for t in text.split(",")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _field_comments():
    """{field: its comment} from RunConfig's source: the command line's help is the dataclass's own text."""
    lines = inspect.getsource(RunConfig).splitlines()
    return {m[1]: m[2] for m in (re.match(r"\s+(\w+): \w+ = .*?  # (.*)$", line) for line in lines) if m}


def _shown(value, kind):
    """A setting as --help prints it: a tuple joined by commas, a float in 4 digits."""
    return ",".join(value) if kind is tuple else f"{value:.4g}" if kind is float else str(value or repr(value))


def parser():
    """The command line: one option per RunConfig field (its type, default and comment), then the run's own."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    comments = _field_comments()
    for f in fields(RunConfig):
        default = f.default if f.default_factory is MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        shown = "; ".join([_shown(default, f.type)]
                          + [f"--preset {k}: {_shown(r[f.name], f.type)}" for k, r in RECIPES.items() if f.name in r])
        text = f"{comments.get(f.name, '')} (default: {shown})".replace("%", "%%")
        if f.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        elif f.type is dict:
            p.add_argument(flag, nargs="*", metavar="KEY=VALUE", default=argparse.SUPPRESS, help=text)
        elif f.type is tuple:
            p.add_argument(flag, metavar="A,B", default=argparse.SUPPRESS, help=text + "; 'none' for none")
        else:  # the value's type is checked by RunConfig, in one line
            p.add_argument(flag, type=str if f.type is str else _parse_value, default=argparse.SUPPRESS, help=text)
    p.add_argument("--out", default="runs/latest", help="run folder for metrics.json, checkpoint and plots (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(a):
    """The RunConfig of parsed arguments: the preset's recipe, then only the options given."""
    given = {k: v for k, v in vars(a).items() if k not in ("out", "resume", "no_progress")}
    if "model" in given:
        pairs = [kv.split("=", 1) for kv in given["model"]]
        bad = [kv for kv, pair in zip(given["model"], pairs) if len(pair) != 2]
        if bad:
            raise ValueError(f"--model takes KEY=VALUE, got {bad[0]!r}")
        given["model"] = {k: _parse_value(v) for k, v in pairs}
    if "augment" in given:
        text = given["augment"]
        given["augment"] = () if text in ("", "none") else tuple(t.strip() for t in text.split(","))
    return recipe(**given)


def main(argv=None):
    a = parser().parse_args(argv)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        train_and_report(config_from_args(a), a.out, resume=a.resume, progress=not a.no_progress)
    except DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) and "checkpoint" in str(e):
            again = shlex.join(["python", "train.py", *args, *([] if "--resume" in args else ["--resume"])])
            print(f"{e}; continue with: {again}", file=sys.stderr)
        else:  # nothing of this run to continue from
            again = shlex.join(["python", "train.py", *[x for x in args if x != "--resume"]])
            where = str(e) if isinstance(e, Interrupted) else "interrupted before training started"
            print(f"{where}; no epoch finished, start again with: {again}", file=sys.stderr)
        return 130
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
