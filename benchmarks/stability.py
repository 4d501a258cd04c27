"""Why the default network diverges at a high max LR, and which change keeps it alive, side by side.

    python benchmarks/stability.py                       # every candidate, 8 epochs, seed 20261202, fp32
    python benchmarks/stability.py --candidates "none" "clip 1" --epochs 8 --out part.json
    python benchmarks/stability.py --preset tokens --seed 0 --candidates "none" "clip 1"

Each candidate trains the default network with the notebook's code (train_epoch) for the
first --epochs epochs of the 24-epoch one-cycle schedule, at the max LR that the rule
"min/2" suggests for the seed (4.35e-2 for seed 20261202 in fp32: its warm-up passes the
LRs where the default blows up), unless the candidate sets its own. Hooks record, every
step: the LR, the loss, the RMS of the residual stream entering each block, the largest
attention logit |q_i k_j| / sqrt(8) in each block, and the gradient norms of the convs,
batch norms, blocks and FC that the optimizer step sees (after clipping, where a candidate
clips). The trace keeps
every 25th step and the 10 steps before a divergence. Writes
benchmarks/results/stability.json (rows of the same name are replaced).
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, find_max_lr, machine_name, make_optimizer, setup  # noqa: E402
from utils.schedule import one_cycle_scheduler  # noqa: E402
from utils.training import BLOWUP, DivergenceError, evaluate, train_epoch  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "stability.json"
BEFORE = {"lr_rule": "min/2", "grad_clip": 0.0}  # the recipe before the fix; every candidate starts from it
# name -> RunConfig overrides of BEFORE; with an lr_rule, the max LR is that rule's, else the stress LR
CANDIDATES = {
    "none": {},
    "clip 1": {"grad_clip": 1.0},
    "clip 0.3": {"grad_clip": 0.3},
    "Adam beta2 0.99": {"betas": (0.9, 0.99)},
    "peak after 10 of 24 epochs": {"warmup_frac": 10 / 24},
    "safe rule (LR capped at divergence / 6)": {"lr_rule": "safe"},
    "safe rule + clip 1": {"lr_rule": "safe", "grad_clip": 1.0},
}


def trace(run):
    """Per-step statistics collected by hooks: a dict of lists, filled as training runs."""
    net, rec, cur = run.net, {"lr": [], "stream_rms": [], "max_logit": [], "grad_norm": []}, {}

    def block_hook(i):
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            q, k = module.q(x), module.k(x)  # (B, 8), or (B, T, 8) over positions
            q, k = (q.unsqueeze(-1), k.unsqueeze(-1)) if x.dim() == 2 else (q, k)
            cur[f"rms{i}"] = x.pow(2).mean().sqrt().item()
            cur[f"logit{i}"] = (q @ k.transpose(-1, -2)).abs().amax().item() * module.inv_sqrt_d
        return hook

    for i, block in enumerate(net.blocks):
        block.register_forward_hook(block_hook(i))
    groups = {"convs": net.convs, "bns": net.bns, "blocks": net.blocks, "fc": net.fc}

    def grads(optimizer, args, kwargs):  # before each step: the gradients the step will use
        if not net.training:
            return
        rec["lr"].append(optimizer.param_groups[0]["lr"])
        rec["stream_rms"].append([cur[f"rms{i}"] for i in range(4)])
        rec["max_logit"].append([cur[f"logit{i}"] for i in range(4)])
        rec["grad_norm"].append({n: torch.cat([p.grad.flatten() for p in m.parameters()]).norm().item()
                                 for n, m in groups.items()})
    return rec, grads


def run_candidate(name, seed, precision, epochs, stress_lr, preset="best"):
    overrides = CANDIDATES[name]
    cfg = RunConfig(preset=preset, seed=seed, precision=precision, download=False, **{**BEFORE, **overrides})
    run = setup(cfg, verbose=False)
    suggested = find_max_lr(run, progress=False)["suggested"]  # always run, as in the notebook: the same RNG state after it
    max_lr = suggested if "lr_rule" in overrides else stress_lr
    rec, grads = trace(run)
    losses = []
    criterion = run.criterion

    def logged(out, y):
        loss = criterion(out, y)
        if run.net.training:
            losses.append(loss.detach().float())
        return loss

    optimizer = make_optimizer(run, max_lr)
    optimizer.register_step_pre_hook(grads)
    scheduler = one_cycle_scheduler(optimizer, max_lr, cfg.epochs, len(run.train_loader), warmup_frac=cfg.warmup_frac)
    epochs_rows, stopped = [], None
    for epoch in range(1, epochs + 1):
        run.train_loader.set_epoch(epoch)
        try:
            tr = train_epoch(run.model, run.train_loader, optimizer, scheduler, device=run.device,
                             precision=run.precision, criterion=logged, epoch=epoch, progress=False,
                             grad_clip=cfg.grad_clip)
        except DivergenceError as e:
            stopped = str(e)
            break
        te = evaluate(run.model, run.test_loader, device=run.device, precision=run.precision)
        epochs_rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_acc": te["acc"]})
        print(f"{name}: epoch {epoch} train loss {tr['loss']:.4f} test acc {te['acc']:.2f}%", flush=True)
    values = torch.stack(losses).tolist()
    limit = BLOWUP * math.log(10)  # train_epoch's own divergence limit
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v) or v > limit), None)
    n = len(values) if bad is None else bad + 1
    keep = sorted({*range(24, n, 25), *range(max(0, n - 10), n)})
    steps = [{"step": i + 1, "lr": rec["lr"][i], "loss": values[i], "stream_rms": rec["stream_rms"][i], "max_logit": rec["max_logit"][i],
              "grad_norm": rec["grad_norm"][i]} for i in keep if i < len(rec["grad_norm"])]
    return {"name": name, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            "max_lr": max_lr, "seed": seed, "precision": run.precision, "epochs": epochs_rows,
            "diverged_at_step": None if bad is None else bad + 1, "stopped": stopped, "trace": steps,
            "machine": machine_name(run.device), "data": run.data}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help=f"among {list(CANDIDATES)}")
    p.add_argument("--preset", default="best", help="best, or tokens (the blocks over positions)")
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the 24-epoch schedule (the peak is after 5)")
    p.add_argument("--max-lr", type=float, default=0.0, help="the stress LR (0: what min/2 suggests for the seed)")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    unknown = [c for c in a.candidates if c not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    stress = a.max_lr
    if not stress:
        stress = find_max_lr(setup(RunConfig(preset=a.preset, seed=a.seed, precision=a.precision, download=False, **BEFORE),
                                   verbose=False), progress=False)["suggested"]
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in a.candidates:
        key = f"{a.preset}: {name}, seed {a.seed}, {a.precision}"
        results[key] = run_candidate(name, a.seed, a.precision, a.epochs, stress, a.preset)
        results[key]["preset"] = a.preset
        out.write_text(json.dumps(results, indent=1))
        r = results[key]
        print(f"{key}: max LR {r['max_lr']:.3g}, "
              + (f"diverged at step {r['diverged_at_step']}" if r["stopped"] else
                 f"survived {a.epochs} epochs, test acc {r['epochs'][-1]['test_acc']:.2f}%"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
