"""Why the default network diverges at a high max LR, and which change keeps it alive, side by side.

    python -m benchmarks.stability                       # every candidate, 8 epochs, seed 20261202, fp32
    python -m benchmarks.stability --candidates "none" "clip 1" --epochs 8 --out part.json
    python -m benchmarks.stability --preset tokens --seed 0 --candidates "none" "clip 1"

Each candidate trains the network with the notebook's code (train_epoch) for the first
--epochs epochs of the 24-epoch one-cycle schedule, at the max LR that the rule "min/2"
suggests for the seed (3.87e-2 for seed 20261202 in fp32: its warm-up passes the LRs where
the default blows up), unless the candidate sets its own rule. After every step (train_epoch's
on_step) it records: the LR, the loss, the RMS of the residual stream entering each block,
the largest attention logit |q_i k_j| / sqrt(8) in each block, and the gradient norms of the
convs, batch norms, blocks and FC that the step used (after clipping, where a candidate
clips). The trace keeps every 25th step and the 10 steps before a divergence. Writes
benchmarks/results/stability.json (rows of the same name are replaced).
"""
import argparse
import math
import sys
from dataclasses import asdict

import torch

from benchmarks.common import RESULTS, provenance, update_json
from train import find_max_lr, make_optimizer, recipe, setup
from utils.schedule import one_cycle_scheduler
from utils.training import BLOWUP, DivergenceError, evaluate, train_epoch

BEFORE = {"lr_rule": "min/2", "grad_clip": 0.0}  # the recipe before the fix; every candidate starts from it
# name -> RunConfig changes to BEFORE; with an lr_rule, the max LR is that rule's, else the stress LR
CANDIDATES = {
    "none": {},
    "clip 1": {"grad_clip": 1.0},
    "clip 0.3": {"grad_clip": 0.3},
    "peak after 10 of 24 epochs": {"warmup_frac": 10 / 24},
    "safe rule (LR capped at divergence / 6)": {"lr_rule": "safe"},
    "safe rule + clip 1": {"lr_rule": "safe", "grad_clip": 1.0},
}


def tracer(run, optimizer):
    """(trace, on_step): forward hooks on the blocks, and an on_step for train_epoch that appends one row a step."""
    net, seen, rows = run.net, {}, []
    next_lr = [optimizer.param_groups[0]["lr"]]  # on_step runs after the scheduler's step: keep the LR the step used

    def block_hook(i):
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            q, k, _ = module.qkv(x)  # (B, 8, 1) over the vector's numbers, or (B, T, 8) over positions
            seen[i] = x.pow(2).mean().sqrt().item(), (q @ k.transpose(-1, -2)).abs().amax().item() * module.inv_sqrt_d
        return hook

    for i, block in enumerate(net.blocks):
        block.register_forward_hook(block_hook(i))
    groups = {"convs": net.convs, "bns": net.bns, "blocks": net.blocks, "fc": net.fc}

    def on_step(step, loss):
        rows.append({"step": len(rows) + 1, "lr": next_lr[0], "loss": loss.item(),
                     "stream_rms": [seen[i][0] for i in range(4)], "max_logit": [seen[i][1] for i in range(4)],
                     "grad_norm": {n: torch.cat([p.grad.flatten() for p in m.parameters()]).norm().item()
                                   for n, m in groups.items()}})  # the gradients the step used (clipped in place)
        next_lr[0] = optimizer.param_groups[0]["lr"]
    return rows, on_step


def run_candidate(name, seed, precision, epochs, stress_lr, preset="default"):
    changes = CANDIDATES[name]
    cfg = recipe(preset, seed=seed, precision=precision, download=False, **{**BEFORE, **changes})
    run = setup(cfg, verbose=False)
    max_lr = find_max_lr(run, progress=False)["suggested"] if "lr_rule" in changes else stress_lr
    optimizer = make_optimizer(run, max_lr)
    scheduler = one_cycle_scheduler(optimizer, max_lr, cfg.epochs, len(run.train_loader), warmup_frac=cfg.warmup_frac)
    trace, on_step = tracer(run, optimizer)
    epochs_rows, stopped = [], None
    for epoch in range(1, epochs + 1):
        run.train_loader.set_epoch(epoch)
        try:
            tr = train_epoch(run.model, run.train_loader, optimizer, scheduler, grad_clip=cfg.grad_clip,
                             precision=run.precision, progress=False, on_step=on_step)
        except DivergenceError as e:
            stopped = str(e)
            break
        te = evaluate(run.model, run.test_loader, precision=run.precision)
        epochs_rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_acc": te["acc"]})
        print(f"{name}: epoch {epoch} train loss {tr['loss']:.4f} test acc {te['acc']:.2f}%", flush=True)
    limit = BLOWUP * math.log(10)  # train_epoch's own divergence limit
    bad = next((t["step"] for t in trace if not math.isfinite(t["loss"]) or t["loss"] > limit), None)
    n = len(trace) if bad is None else bad
    keep = sorted({*range(24, n, 25), *range(max(0, n - 10), n)})
    return {"name": name, "overrides": changes, "max_lr": max_lr, "seed": seed, "precision": run.precision,
            "batch_size": cfg.batch_size, "model_config": asdict(run.net.config), "epochs": epochs_rows,
            "diverged_at_step": bad, "stopped": stopped, "trace": [trace[i] for i in keep], "preset": preset,
            **provenance(run.device, run.cfg.data_dir)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help=f"among {list(CANDIDATES)}")
    p.add_argument("--preset", default="default", help="default, or tokens (the blocks over positions)")
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the 24-epoch schedule (the peak is after 5)")
    p.add_argument("--max-lr", type=float, default=0.0, help="the stress LR (0: what min/2 suggests for the seed)")
    p.add_argument("--out", default=str(RESULTS / "stability.json"))
    a = p.parse_args(argv)
    unknown = [c for c in a.candidates if c not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    stress = a.max_lr or find_max_lr(setup(recipe(a.preset, seed=a.seed, precision=a.precision, download=False, **BEFORE),
                                           verbose=False), progress=False)["suggested"]
    for name in a.candidates:
        key = f"{a.preset}: {name}, seed {a.seed}, {a.precision}"
        r = update_json(a.out, {key: run_candidate(name, a.seed, a.precision, a.epochs, stress, a.preset)})[key]
        print(f"{key}: max LR {r['max_lr']:.3g}, "
              + (f"diverged at step {r['diverged_at_step']}" if r["stopped"] else
                 f"survived {a.epochs} epochs, test acc {r['epochs'][-1]['test_acc']:.2f}%"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
