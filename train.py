"""Train the ULTIMUS network on CIFAR-10: the recipe the notebook runs, and its command line.

    python train.py                          # 24 epochs, best configuration, LR range test
    python train.py --train-subset 2000 --epochs 2 --out runs/quick
    python train.py --out runs/a --resume    # continue an interrupted run

Writes into --out: metrics.json, checkpoint.pt, lr_finder.json and the plots.
"""
import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from models import PRESETS, Net, count_parameters
from models.checks import check_types, from_dict
from models.model_9 import ModelConfig
from utils import plots
from utils.data import AUGMENTATIONS, CLASSES, DataError, Loader, data_label, load_cifar10
from utils.device import compile_mode, grad_scaler, optimizer_kwargs, pick_device, precision_for, set_seed
from utils.lr_finder import RULES, find_lr
from utils.schedule import one_cycle_scheduler
from utils.training import DivergenceError, Interrupted, confusion_matrix, fit, predict


def peak_memory_mib():
    """Peak resident memory of this process in MiB, or None where the platform cannot say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


@dataclass
class RunConfig:
    preset: str = "best"  # a key of models.PRESETS: "best", "reference" or "tokens"
    model: dict = field(default_factory=dict)  # overrides of the preset's ModelConfig, e.g. {"residual": False}
    epochs: int = 24
    batch_size: int = 128  # twice the steps of 256: reference 54.82 -> 57.78%, best 76.10 -> 76.96% (accuracy.json)
    max_lr: float = 0.0  # 0: take it from the LR range test
    lr_rule: str = "safe"  # how the LR range test turns its curve into max_lr (utils/lr_finder.py)
    lr_finder_iters: int = 100
    warmup_frac: float = 5 / 24  # the share of the steps that warm the LR up to its peak (5 of 24 epochs)
    final_div: float = 1000.0  # the LR falls to max_lr / final_div at the last step
    betas: tuple = (0.9, 0.999)  # Adam's betas
    bn_bias_lr_mult: float = 1.0  # the batch norms' biases train at this many times the LR
    grad_clip: float = 1.0  # > 0: gradients scaled down to at most this total norm before each step (0: off)
    weight_decay: float = 0.0  # > 0 switches Adam to AdamW
    label_smoothing: float = 0.0  # 0.1 gained on one thread and lost on two (docs/ablation.md): noise
    augment: tuple = ("flip",)  # "crop" or "crop2" (+-4 or +-2 pixels), "flip" or "altflip", "cutout" (utils/data.py)
    train_subset: int = 0  # 0: all 50,000 training images; N: the first N
    test_subset: int = 0  # 0: all 10,000 test images
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    precision: str = "auto"  # "auto" (by device), "bf16", "fp16", "fp32"
    channels_last: bool = True  # NHWC activations for the convolutions (docs/speed.md)
    compile: bool = False  # torch.compile the model (CUDA graphs on CUDA); on the CPU it is slower for A = 8
    data_dir: str = ""  # "": $CIFAR10_DIR, else ./data
    download: bool = True  # download with torchvision when the folder has no CIFAR-10

    def __post_init__(self):
        check_types(self, "option", {"precision": ("auto", "bf16", "fp16", "fp32")})
        self.augment = tuple(self.augment)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {list(PRESETS)}")
        self.model_config()  # rejects unknown model keys
        for name in ("epochs", "batch_size", "lr_finder_iters"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.max_lr >= 0:
            raise ValueError(f"max_lr must be positive (or 0 for the LR range test), got {self.max_lr}")
        if self.lr_rule not in RULES:
            raise ValueError(f"unknown lr_rule {self.lr_rule!r}; choose from {list(RULES)}")
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ValueError(f"unknown augmentation(s) {bad}; choose from {list(AUGMENTATIONS)}")
        if min(self.train_subset, self.test_subset, self.weight_decay, self.grad_clip) < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("train_subset, test_subset, weight_decay and grad_clip must be >= 0, label_smoothing in [0, 1)")

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
        d["augment"], d["betas"] = list(self.augment), list(self.betas)  # as JSON gives them back
        d["precision"] = precision or self.precision
        return d


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
    criterion: object
    data: str  # what the data are: "CIFAR-10 (official files)" or an unverified copy

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
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    data = data_label(cfg.data_dir or None)
    if verbose:
        print(f"data: {data}, {len(y_train):,} training and {len(y_test):,} test images; "
              f"model: {count_parameters(net):,} parameters")
    return Run(cfg, device, precision, model, net, train_loader, test_loader, x_test, criterion, data)


def make_optimizer(run, lr):
    """Adam (AdamW with weight decay), fused where torch has it; BN biases in a group of their own if asked."""
    opt = torch.optim.AdamW if run.cfg.weight_decay else torch.optim.Adam
    params = list(run.net.parameters())
    if run.cfg.bn_bias_lr_mult != 1 and run.net.bns is not None:
        bn_biases = [bn.bias for bn in run.net.bns]
        rest = [p for p in params if all(p is not b for b in bn_biases)]
        params = [{"params": rest}, {"params": bn_biases, "lr_mult": run.cfg.bn_bias_lr_mult}]
    return opt(params, lr=lr, betas=tuple(run.cfg.betas), weight_decay=run.cfg.weight_decay,
               **optimizer_kwargs(run.device))


def find_max_lr(run, out_dir=None, resume=False, progress=True):
    """The LR range test on the training data; saves lr_finder.json (and reuses it on resume)."""
    saved = Path(out_dir) / "lr_finder.json" if out_dir else None
    if resume and saved and saved.exists():
        result = json.loads(saved.read_text())
        if result.get("settings") == run.resume_settings():
            return result
    result = find_lr(run.model, make_optimizer(run, 1e-5), run.criterion, run.train_loader, device=run.device,
                     precision=run.precision, num_iter=run.cfg.lr_finder_iters, rule=run.cfg.lr_rule, progress=progress)
    result["settings"] = run.resume_settings()
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(result))
    return result


def train_model(run, max_lr, out_dir=None, resume=False, progress=True, log=print):
    """The one-cycle training of cfg.epochs epochs; returns fit's history."""
    optimizer = make_optimizer(run, max_lr)
    scheduler = one_cycle_scheduler(optimizer, max_lr, run.cfg.epochs, len(run.train_loader),
                                    warmup_frac=run.cfg.warmup_frac, final_div=run.cfg.final_div)
    return fit(run.model, optimizer, scheduler, run.train_loader, run.test_loader, run.cfg.epochs,
               device=run.device, precision=run.precision, scaler=grad_scaler(run.device, run.precision),
               criterion=run.criterion, run_dir=out_dir, config=run.resume_settings(), resume=resume, progress=progress, log=log,
               grad_clip=run.cfg.grad_clip)


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
    """Per-class accuracy, confusion matrix, misclassified images, attention maps.

    Returns {"per_class_acc": {class: %}, "test_acc_flip_tta": % with test-time flip averaging}.
    """
    d = Path(image_dir)
    logits, labels = predict(run.model, run.test_loader, device=run.device, precision=run.precision)
    preds = logits.argmax(1)
    tta = predict(run.model, run.test_loader, device=run.device, precision=run.precision, flip=True)[0]
    cm = confusion_matrix(preds, labels, len(CLASSES))
    plots.plot_per_class(cm, CLASSES, d / "per_class.png", show)
    plots.plot_confusion(cm, CLASSES, d / "confusion.png", show)
    wrong = (preds != labels).nonzero().flatten()[:20].cpu()
    plots.plot_gallery(run.test_images[wrong], labels[wrong].tolist(), preds[wrong].tolist(), CLASSES,
                       d / "misclassified.png", show)
    plot_attention_maps(run, d, show, titles=[f"{CLASSES[labels[i]]} (pred {CLASSES[preds[i]]})" for i in range(4)])
    return {"per_class_acc": dict(zip(CLASSES, (100 * cm.diag().float() / cm.sum(1).clamp(min=1)).tolist())),
            "test_acc_flip_tta": 100 * (tta.argmax(1) == labels).float().mean().item()}


def machine_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
    except OSError:
        pass
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
    history = train_model(r, max_lr, out, resume=resume, progress=progress)
    analysis = None
    if images:
        plot_training(r, history, lr_result, out)
        analysis = report(r, out)
    metrics = metrics_of(r, history, max_lr, lr_result, time.perf_counter() - t0, analysis)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"final test accuracy {metrics['final_test_acc']:.2f}% after {len(history['epochs'])} epochs; "
          f"{metrics['wall_s']:.0f}s in all; wrote {out / 'metrics.json'}")
    return metrics


def _parse_value(text):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in text:
        return [_parse_value(t) for t in text.split(",")]
    try:
        return int(text)
    except ValueError:
        return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=24, help="epochs of the one-cycle schedule")
    p.add_argument("--data-dir", default="", help="folder with cifar-10-batches-bin/ or -py/ (default: $CIFAR10_DIR, else ./data)")
    p.add_argument("--out", default="runs/latest", help="run folder for metrics.json, checkpoint and plots")
    p.add_argument("--seed", type=int, default=0, help="seeds the model's initialisation and the data order")
    p.add_argument("--train-subset", type=int, default=0, help="train on the first N images only (quick runs)")
    p.add_argument("--test-subset", type=int, default=0, help="test on the first N images only")
    p.add_argument("--preset", default="best", help=f"one of {list(PRESETS)}")
    p.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE", help="model overrides, e.g. residual=false strides=1,1,1")
    p.add_argument("--batch-size", type=int, default=128, help="images per training step")
    p.add_argument("--max-lr", type=float, default=0.0, help="skip the LR range test and use this max LR")
    p.add_argument("--lr-rule", default="safe", help=f"LR range test rule, one of {list(RULES)}")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clipping before each step (0: off)")
    p.add_argument("--augment", default="flip", help="comma-separated: crop or crop2, flip or altflip, cutout; 'none' for none")
    p.add_argument("--weight-decay", type=float, default=0.0, help="> 0 switches Adam to AdamW")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="CrossEntropyLoss label smoothing (0: none)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--precision", default="auto", help="auto, bf16, fp16, fp32")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW activations instead of NHWC")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is missing")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    try:
        model = {}
        for kv in a.model:
            if "=" not in kv:
                raise ValueError(f"--model takes KEY=VALUE, got {kv!r}")
            k, v = kv.split("=", 1)
            model[k] = _parse_value(v)
        augment = () if a.augment in ("", "none") else tuple(s.strip() for s in a.augment.split(","))
        cfg = RunConfig(preset=a.preset, model=model, epochs=a.epochs, batch_size=a.batch_size, max_lr=a.max_lr,
                        lr_rule=a.lr_rule, grad_clip=a.grad_clip, augment=augment, weight_decay=a.weight_decay,
                        label_smoothing=a.label_smoothing, train_subset=a.train_subset, test_subset=a.test_subset,
                        seed=a.seed, device=a.device, precision=a.precision, channels_last=not a.no_channels_last,
                        compile=a.compile, data_dir=a.data_dir, download=not a.no_download)
        train_and_report(cfg, a.out, resume=a.resume, progress=not a.no_progress)
    except DivergenceError as e:
        print(f"error: {e}. The last good checkpoint is in {a.out}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        args = list(sys.argv[1:] if argv is None else argv)
        again = shlex.join(["python", "train.py", *args, *([] if "--resume" in args else ["--resume"])])
        where = str(e) if isinstance(e, Interrupted) else "interrupted before training started"
        print(f"{where}; continue with: {again}", file=sys.stderr)
        return 130
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
