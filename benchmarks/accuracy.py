"""Accuracy benchmark: train the experiments of benchmarks/experiments.json for 24 epochs on the full CIFAR-10.

    python -m benchmarks.accuracy                       # every experiment
    python -m benchmarks.accuracy --configs "default, fp32" reference --seeds 3
    python -m benchmarks.accuracy --configs reference --seeds 1 --first-seed 2 --out part.json   # one seed of a row
    python -m benchmarks.accuracy --merge part1.json part2.json     # rows split over processes, joined

An experiment is a name, its RunConfig fields (built by train.recipe, so the preset's recipe
applies), what it changes, and its seeds. Each seed takes its max LR from the LR range test
(or the fixed max_lr) and trains with train.train, the notebook's code. Rows are merged into
benchmarks/results/accuracy.json (one entry per experiment).
"""
import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from benchmarks.common import RESULTS, provenance, update_json
from models import count_parameters
from train import find_max_lr, recipe, setup, train
from utils.training import DivergenceError, evaluate

EXPERIMENTS = json.loads((Path(__file__).parent / "experiments.json").read_text())


def run_seed(cfg, name, change, ema=None, stop_after=None):
    """One seed of a row: a one-seed results entry (its "stopped" says why when the divergence check ended it).
    stop_after=N: only the first N epochs of the cfg.epochs-long schedule (recorded as trained_epochs).

    ema: a decay; an exponential moving average of the weights (buffers included) is kept from the first
    training step and its test accuracy recorded beside the trained weights' (ema_test_acc)."""
    run = setup(cfg, verbose=False)
    max_lr = cfg.max_lr or find_max_lr(run)["suggested"]  # the range test restores the model and takes no random number
    if ema:
        average = AveragedModel(run.net, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
        hook = register_optimizer_step_post_hook(lambda *_: average.update_parameters(run.net))
    bar = tqdm(total=stop_after or cfg.epochs, desc=f"{name} (seed {cfg.seed})", unit="epoch")

    def log(line):
        bar.update(1)
        bar.set_postfix_str(line.split("LR")[1].split("(")[0].strip()[-40:] if "LR" in line else line)

    try:
        history = train(run, max_lr, progress=False, log=log, stop_after=stop_after)
        done = {"seeds": [cfg.seed], "test_acc": [history["epochs"][-1]["test_acc"]], "histories": [history["epochs"]],
                "sec_per_epoch": statistics.mean(history["epoch_seconds"])}
        if ema:
            done |= {"ema_decay": ema, "ema_test_acc": [evaluate(average, run.test_loader, precision=run.precision)["acc"]]}
    except DivergenceError as e:  # a row of its own: a recipe that blows up is a result too
        done = {"seeds": [], "stopped": [f"seed {cfg.seed}: {e}"], "sec_per_epoch": None}
    finally:
        bar.close()
        if ema:
            hook.remove()
    if cfg.teacher and (named := Path(cfg.teacher).with_name("teacher.json")).exists():  # written by benchmarks/teacher.py
        done["teacher_name"] = json.loads(named.read_text())["name"]
    return {"name": name, "change": change, "config": run.resume_settings(), "model_config": asdict(run.net.config),
            "params": count_parameters(run.net), "epochs": cfg.epochs, "trained_epochs": stop_after or cfg.epochs,
            "max_lr": [max_lr],
            "max_lr_by_seed": {str(cfg.seed): max_lr}, "device": str(run.device), **provenance(run.device, run.cfg.data_dir), **done}


def merge(parts):
    """One row from rows of the same experiment run on different seeds (each a results entry)."""
    parts = sorted(parts, key=lambda r: min(r["seeds"] or [1e9]))
    if len({(json.dumps(r["config"] | {"seed": 0}), r["machine"], r.get("cpu_capability"), r.get("teacher_name"))
            for r in parts}) > 1:
        raise SystemExit(f"{parts[0]['name']}: the parts differ in configuration, machine or teacher; not merged")
    row = dict(parts[0])
    row["max_lr_by_seed"] = {k: v for r in parts for k, v in r.get("max_lr_by_seed", {}).items()}
    row["sec_per_epoch_by_seed"] = {k: v for r in parts for k, v in (r.get("sec_per_epoch_by_seed") or (
        {str(r["seeds"][0]): r["sec_per_epoch"]} if len(r["seeds"]) == 1 else {})).items()}  # a one-seed part: its own
    for key in ("seeds", "test_acc", "max_lr", "histories", "stopped", "ema_test_acc"):
        row[key] = [x for r in parts for x in r.get(key, [])]
    secs = [r["sec_per_epoch"] for r in parts for _ in r["seeds"]]
    accs = row["test_acc"]
    row.update(mean=statistics.mean(accs) if accs else None, std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
               sec_per_epoch=statistics.mean(secs) if secs else None)
    for key in ("stopped", "ema_test_acc"):
        if not row[key]:
            del row[key]
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=list(EXPERIMENTS), help=f"names among {list(EXPERIMENTS)}")
    p.add_argument("--seeds", type=int, default=0, help="seeds per experiment (0: each one's default)")
    p.add_argument("--seed-list", type=int, nargs="+", help="exactly these seeds (instead of --seeds/--first-seed)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run from this one on (to split a row over machines)")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(RESULTS / "accuracy.json"))
    p.add_argument("--merge", nargs="+", metavar="FILE", help="merge these result files' rows into --out and stop")
    a = p.parse_args(argv)
    if a.merge:
        parts = {}
        for f in a.merge:
            for name, row in json.loads(Path(f).read_text()).items():
                parts.setdefault(name, []).append(row)
        update_json(a.out, {name: merge(rows) for name, rows in parts.items()}, order=EXPERIMENTS)
        print(f"merged {sorted(parts)} into {a.out}")
        return 0
    unknown = [c for c in a.configs if c not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    for name in a.configs:
        e = EXPERIMENTS[name]
        seeds = a.seed_list or range(a.first_seed, a.first_seed + (a.seeds or e["seeds"]))
        row = merge([run_seed(recipe(**e["config"], epochs=a.epochs, seed=s, device=a.device), name, e["change"],
                              e.get("ema")) for s in seeds])
        update_json(a.out, {name: row}, order=EXPERIMENTS)  # a new row goes where experiments.json puts it
        print(f"{name}: {row['test_acc']} ({len(row['seeds'])} seed(s) finished; stopped: {row.get('stopped') or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
