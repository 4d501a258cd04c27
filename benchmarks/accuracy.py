"""Accuracy benchmark: train named configurations for 24 epochs on the full CIFAR-10.

    python benchmarks/accuracy.py                       # every configuration
    python benchmarks/accuracy.py --configs best reference --seeds 3
    python benchmarks/accuracy.py --configs best --seeds 1 --first-seed 2 --out part.json   # one seed of a row
    python benchmarks/accuracy.py --merge part1.json part2.json     # rows split over processes, joined

Each configuration is a RunConfig (train.py) with its LR from the LR range test, trained
with the same code as the notebook. Results are merged into
benchmarks/results/accuracy.json (one entry per configuration) and accuracy.md.
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, count_parameters, find_max_lr, machine_name, setup, train_model  # noqa: E402
from utils.training import DivergenceError  # noqa: E402
from variants import apply as apply_variant  # noqa: E402

STRIDED = {"downsample": "stride"}
B256 = {"batch_size": 256}  # the default before batch 128 (rows measured then keep it)
REF = {"preset": "reference", "compile": True, **B256}  # torch.compile: ~25% less time per epoch at A = 32
KNIFE = {"lr_rule": "min/2", "grad_clip": 0.0}  # the recipe before the safe rule and clipping: every row below ran with it
# name -> (RunConfig fields, what the row changes, seeds by default)
LEGACY = {
    "best, min/2, no clipping": ({"preset": "best"}, "BN, ReLU, residual, max pooling 2,2,1 before BN, scale inside; flip; batch 128; LR rule min/2, no clipping", 3),
    "best, batch 256, strided convs": ({"preset": "best", **B256, "model": STRIDED}, "batch 256, strides 2,2,1 instead of max pooling", 3),
    "best, batch 256, strided convs + crop": ({"preset": "best", **B256, "model": STRIDED, "augment": ("crop", "flip")}, "batch 256, strided convs, random crop added", 1),
    "best, batch 256, strided convs, LR rule min/10": ({"preset": "best", **B256, "model": STRIDED, "lr_rule": "min/10"}, "batch 256, strided convs, max LR = loss minimum / 10", 1),
    "reference": (REF, "the write-up's network: no BN, ReLU, no residual, A = 32, scale after softmax; batch 256", 3),
    "reference + BN": ({**REF, "model": {"batch_norm": True}}, "BatchNorm after each conv", 1),
    "reference - ReLU": ({**REF, "model": {"relu": False}}, "no ReLU after the convs", 1),
    "reference + residual": ({**REF, "model": {"residual": True}}, "X + block(X)", 1),
    "reference + strides 2,2,1": ({**REF, "compile": False, "model": {"strides": [2, 2, 1]}}, "A = 8", 1),
    "reference + scale inside": ({**REF, "model": {"scale": "inside"}}, "softmax(QK/sqrt 8)", 3),
    "reference - augmentation": ({**REF, "augment": ()}, "no flip", 1),
    "reference, batch 128": ({**REF, "batch_size": 128}, "twice the steps per epoch", 3),
    "reference, batch 128 (5 seeds)": ({**REF, "batch_size": 128}, "the write-up's network at the default batch size, 5 seeds", 5),
    "reference, batch 128, LR rule div/40": ({**REF, "batch_size": 128, "lr_rule": "div/40"}, "max LR = the LR where the range test diverged / 40, 5 seeds", 5),
    "best, LR rule div/40": ({"preset": "best", "lr_rule": "div/40"}, "max LR = the LR where the range test diverged / 40", 1),
    # candidates for 80%, one seed each unless stated
    "best + alternating flip": ({"preset": "best", "augment": ("altflip",)}, "each image mirrored in every other epoch instead of at random", 1),
    "best, Adam betas 0.9, 0.99": ({"preset": "best", "betas": (0.9, 0.99)}, "a shorter second-moment average", 1),
    "best, peak after 2 of 24 epochs": ({"preset": "best", "warmup_frac": 2 / 24}, "shorter warm-up (the default peaks after 5)", 1),
    "best, LR rule min/1.5": ({"preset": "best", "lr_rule": "min/1.5"}, "a higher max LR: loss minimum / 1.5", 1),
    "best + BN biases at 10x LR": ({"preset": "best", "bn_bias_lr_mult": 10.0}, "batch norm biases train at 10 times the LR", 1),
    "best, strides 2,1,1 (A = 16)": ({"preset": "best", "model": {"strides": [2, 1, 1]}}, "no pooling after conv2: conv3 and the GAP at 16x16", 1),
    "best, strides 2,4,1 (A = 4)": ({"preset": "best", "model": {"strides": [2, 4, 1]}}, "4x4 max pooling after conv2: conv3 and the GAP at 4x4", 1),
    "best, strides 2,4,1 (A = 4), LR rule min/3": ({"preset": "best", "model": {"strides": [2, 4, 1]}, "lr_rule": "min/3"}, "A = 4 at a lower max LR: loss minimum / 3", 1),
    "best + crop2": ({"preset": "best", "augment": ("crop2", "flip")}, "random +-2-pixel shifts added", 1),
    "best, peak after 10 of 24 epochs": ({"preset": "best", "warmup_frac": 10 / 24}, "longer warm-up (the default peaks after 5)", 1),
    "best + label smoothing 0.1": ({"preset": "best", "label_smoothing": 0.1}, "cross-entropy with label smoothing 0.1, two threads", 3),
    "best + label smoothing 0.1 (one thread)": ({"preset": "best", "label_smoothing": 0.1}, "the same, run on one thread", 3),
    "best + AdamW weight decay 0.01": ({"preset": "best", "weight_decay": 0.01}, "AdamW, decoupled weight decay 0.01", 1),
    "best + label smoothing 0.1 + AdamW weight decay 0.01": ({"preset": "best", "label_smoothing": 0.1, "weight_decay": 0.01}, "label smoothing 0.1 + AdamW weight decay 0.01", 3),
    "failure: LR at the loss minimum": ({"preset": "best", **B256, "model": STRIDED, "lr_rule": "min/1"}, "best with strided convs, batch 256, max LR = loss minimum (no division)", 1),
    "failure: steepest-slope LR": ({**REF, "lr_rule": "steepest"}, "reference, max LR = torch-lr-finder's steepest point", 1),
}
CONFIGS = {
    # the default: LR rule "safe" (min/2, never above the divergence point / 6) and gradient clipping at norm 1
    "default, fp32": ({"preset": "best", "precision": "fp32"}, "the default recipe (LR rule safe, clipping at norm 1), fp32", 10),
    "tokens, fp32": ({"preset": "tokens", "precision": "fp32"}, "the four blocks over the 64 positions of conv3's map (ViT's way), default recipe, fp32", 3),
    # attention over positions: the rows tried for 80% (docs/attention_over_positions.md)
    "tokens, LR rule min/5": ({"preset": "tokens", "precision": "fp32", "lr_rule": "min/5"}, "tokens at a lower max LR: loss minimum / 5 (about 1e-2)", 3),
    "tokens, two and two": ({"preset": "tokens", "precision": "fp32", "model": {"token_blocks": 2}}, "two blocks over the 64 positions, then the pool and two over the pooled vector", 1),
    "tokens, min/5 + pre-norm": ({"preset": "tokens", "precision": "fp32", "lr_rule": "min/5", "variant": "prenorm"}, "LR rule min/5 and a LayerNorm without parameters before each block (benchmarks/variants.py)", 1),
    "tokens, min/5 + positions": ({"preset": "tokens", "precision": "fp32", "lr_rule": "min/5", "variant": "positions"}, "LR rule min/5 and ViT's fixed sine-cosine position code added to the tokens (benchmarks/variants.py)", 3),
    "tokens, min/5 + pre-norm + positions": ({"preset": "tokens", "precision": "fp32", "lr_rule": "min/5", "variant": "prenorm+positions"}, "LR rule min/5, the position code and a LayerNorm before each block: ViT's block order", 1),
    "tokens, two and two, min/5 + positions": ({"preset": "tokens", "precision": "fp32", "lr_rule": "min/5", "model": {"token_blocks": 2}, "variant": "positions"}, "two blocks over positions with the position code, then two over the pooled vector; LR rule min/5", 3),
    "tokens, max LR 8.66e-3": ({"preset": "tokens", "precision": "fp32", "max_lr": 0.008657522562166118}, "tokens at a fixed max LR: what the range test gave the positions row on seeds 0 and 1", 2),
    "reference, batch 128, safe rule + clipping": ({**REF, "batch_size": 128}, "the write-up's network under the default recipe (safe rule, clipping at norm 1)", 5),
    **{name: ({**KNIFE, **f}, change, seeds) for name, (f, change, seeds) in LEGACY.items()},
}


def train_once(cfg, name, seed, variant=None):
    """One 24-epoch run with a progress bar; returns (test accuracy, params, seconds per epoch, run, max_lr, history)."""
    run = setup(cfg, verbose=False)
    if variant:  # a benchmark-local wrapper of the blocks (variants.py), applied before the range test
        apply_variant(run.net, variant)
    suggested = find_max_lr(run)["suggested"]  # run even at a fixed max_lr: the same random stream after it
    max_lr = cfg.max_lr or suggested
    bar = tqdm(total=cfg.epochs, desc=f"{name} (seed {seed})", unit="epoch")

    def log(line):
        bar.update(1)
        bar.set_postfix_str(line.split("LR")[1].split("(")[0].strip()[-40:] if "LR" in line else line)

    try:
        history = train_model(run, max_lr, progress=False, log=log)
    except DivergenceError as e:  # recorded as a row of its own: a recipe that blows up is a result too
        bar.close()
        return None, count_parameters(run.net), None, run, max_lr, {"epochs": [], "stopped": str(e)}
    bar.close()
    last = history["epochs"][-1]
    return last["test_acc"], count_parameters(run.net), statistics.mean(history["epoch_seconds"]), run, max_lr, history


def markdown(results):
    lines = ["Test accuracy after 24 epochs; mean +- std over the seeds listed; max LR: mean over the seeds.", "",
             "| configuration | change | params | seeds | test acc (%) | s/epoch | max LR | machine | data |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results.values():
        if r.get("rebuildable") is False:  # its switch left models/model_9.py; the row stays as history
            r = {**r, "name": f"{r['name']} (not rebuildable: {', '.join(r['removed_switches'])} removed)"}
        if not r["seeds"]:  # every seed stopped by the divergence check
            lines.append(f"| {r['name']} | {r['change']} | {r['params']:,} | {len(r['stopped'])} | stopped: diverged | - | "
                         f"{statistics.mean(r['max_lr']):.2e} | {r['machine']} | {r['data']} |")
            continue
        acc = f"{r['mean']:.2f} +- {r['std']:.2f}" if len(r["seeds"]) > 1 else f"{r['mean']:.2f} (1 seed)"
        acc += f" ({len(r['stopped'])} more stopped: diverged)" if r.get("stopped") else ""
        lines.append(f"| {r['name']} | {r['change']} | {r['params']:,} | {len(r['seeds'])} | {acc} | "
                     f"{r['sec_per_epoch']:.1f} | {statistics.mean(r['max_lr']):.2e} | {r['machine']} | {r['data']} |")
    return "\n".join(lines) + "\n"


def merge(parts):
    """One row from rows of the same configuration run on different seeds (each a results entry)."""
    parts = sorted(parts, key=lambda r: min(r["seeds"] or [1e9]))
    if len({(json.dumps(r["config"] | {"seed": 0}), r["machine"]) for r in parts}) > 1:
        raise SystemExit(f"{parts[0]['name']}: the parts differ in configuration or machine; not merged")
    row = dict(parts[0])
    row["max_lr_by_seed"] = {k: v for r in parts for k, v in r.get("max_lr_by_seed", {}).items()}
    for key in ("seeds", "test_acc", "max_lr", "histories", "stopped"):
        row[key] = [x for r in parts for x in r.get(key, [])]
    secs = [r["sec_per_epoch"] for r in parts for _ in r["seeds"]]
    accs = row["test_acc"]
    row.update(mean=statistics.mean(accs) if accs else None, std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
               sec_per_epoch=statistics.mean(secs) if secs else None)
    if not row["stopped"]:
        del row["stopped"]
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), help=f"names among {list(CONFIGS)}")
    p.add_argument("--seeds", type=int, default=0, help="seeds per configuration (0: each one's default)")
    p.add_argument("--seed-list", type=int, nargs="+", help="exactly these seeds (instead of --seeds/--first-seed)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run from this one on (to split a row over machines)")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "accuracy.json"))
    p.add_argument("--merge", nargs="+", metavar="FILE", help="merge these result files' rows into --out and stop")
    a = p.parse_args(argv)
    if a.merge:
        out = Path(a.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        parts = {}
        for f in a.merge:
            for name, row in json.loads(Path(f).read_text()).items():
                parts.setdefault(name, []).append(row)
        results.update({name: merge(rows) for name, rows in parts.items()})
        results = {k: results[k] for k in [*CONFIGS, *results] if k in results}
        out.write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(markdown(results))
        print(f"merged {sorted(parts)} into {out}")
        return 0
    unknown = [c for c in a.configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in a.configs:
        fields, change, default_seeds = CONFIGS[name]
        fields = dict(fields)
        variant = fields.pop("variant", None)
        seeds, accs, secs, lrs, histories, stopped, lr_by_seed = [], [], [], [], [], [], {}
        for seed in a.seed_list or range(a.first_seed, a.first_seed + (a.seeds or default_seeds)):
            cfg = RunConfig.from_dict({**fields, "epochs": a.epochs, "seed": seed, "device": a.device})
            acc, params, sec, run, max_lr, history = train_once(cfg, name, seed, variant)
            lrs.append(max_lr)
            lr_by_seed[str(seed)] = max_lr
            if acc is None:
                stopped.append(f"seed {seed}: {history['stopped']}")
            else:
                seeds.append(seed), accs.append(acc), secs.append(sec), histories.append(history["epochs"])
        results[name] = {"name": name, "change": change, "config": run.resume_settings(),
                         "model_config": asdict(run.net.config), **({"variant": variant} if variant else {}),
                         "params": params,
                         "epochs": a.epochs, "seeds": seeds, "test_acc": accs,
                         "mean": statistics.mean(accs) if accs else None,
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                         "sec_per_epoch": statistics.mean(secs) if secs else None, "max_lr": lrs, "max_lr_by_seed": lr_by_seed,
                         "device": str(run.device), "machine": machine_name(run.device), "data": run.data,
                         "date": time.strftime("%Y-%m-%d"), "histories": histories,
                         **({"stopped": stopped} if stopped else {})}
        results = {k: results[k] for k in [*CONFIGS, *results] if k in results}  # table in CONFIGS order
        print(f"{name}: {accs} ({len(accs)} seed(s) finished; stopped: {stopped or 'none'})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
