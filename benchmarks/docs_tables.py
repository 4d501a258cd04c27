"""The tables in README.md and docs/*.md, regenerated from benchmarks/results/*.json (never edited by hand).

    python -m benchmarks.docs_tables           # rewrite every generated table in README.md and docs/
    python -m benchmarks.docs_tables --check   # exit 1 if a table differs from its JSON (the tests run this)

A generated table sits between `<!-- table: NAME -->` and `<!-- /table -->` in a docs
file; the prose around it is written by hand and cites the JSON it comes from.
"""
import argparse
import json
import re
import statistics
import sys

from benchmarks.accuracy import markdown, removed
from benchmarks.common import RESULTS, ROOT, as_today, machine
from benchmarks.lr_test_spread import summary

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]  # every page with generated tables
TRAIN_IMAGES = 50_000


def load(name):
    return json.loads((RESULTS / name).read_text())


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def acc_cell(row):
    if row.get("mean") is None:
        return "stopped: diverged"
    s = f"{row['mean']:.2f} +- {row['std']:.2f}" if len(row["seeds"]) > 1 else f"{row['mean']:.2f}"
    return s + (f" ({len(row['stopped'])} stopped: diverged)" if row.get("stopped") else "")


def ablation():
    return markdown(load("accuracy.json")).strip()


def one(rows, key):
    """The one value of key (a field, or a function of a row) in rows, or each value in turn when they differ."""
    return "; ".join(dict.fromkeys(str(key(r) if callable(key) else r[key]) for r in rows))


def lr_spread():
    runs = list(load("lr_test_spread.json").values())
    span = lambda v: f"{v['min']:.2e} / {v['median']:.2e} / {v['max']:.2e}"  # noqa: E731
    rows = [[k, v["runs"], span(v["min/2"]), span(v["safe"]), span(v["diverged_at"]), f"{v['dip_pct']['min']:.1f}-{v['dip_pct']['max']:.1f}"]
            for k, v in summary(runs).items()]
    return (table(["preset, precision", "runs", "min/2: min / median / max", "safe: min / median / max",
                   "diverged at: min / median / max", "dip (%)"], rows)
            + f"\n\nBatch {one(runs, 'batch_size')}, {one(runs, machine)}, {one(runs, 'data')}.")


def stability():
    rows, results = [], list(load("stability.json").values())
    for r in results:
        if r["stopped"]:
            step = r["diverged_at_step"]
            first, last = [t for t in r["trace"] if t["step"] > step - 10][0], r["trace"][-1]  # the last 10 steps
            epoch = (step - 1) // (TRAIN_IMAGES // r["batch_size"]) + 1
            what = (f"diverged at step {step} (epoch {epoch}, LR {last['lr']:.2e}); over its last 10 steps "
                    f"loss {first['loss']:.2f} -> {last['loss']:.1f}, blocks' grad norm {first['grad_norm']['blocks']:.2f} -> "
                    f"{last['grad_norm']['blocks']:.0f}, largest logit {max(first['max_logit']):.0f} -> {max(last['max_logit']):.0f}")
        else:
            what = f"survived {len(r['epochs'])} epochs: test {r['epochs'][-1]['test_acc']:.2f}%"
        name = r["name"] if r.get("rebuildable") is not False else f"{r['name']} (not rebuildable: {removed(r)} removed)"
        rows.append([as_today({"preset": r.get("preset", "best")})["preset"], name, r["seed"], f"{r['max_lr']:.2e}", what])
    r = results[0]
    return (table(["preset", "candidate (one change to min/2, no clipping)", "seed", "max LR", "first epochs of 24"], rows)
            + f"\n\n{r['precision']}, {machine(r)}, {r['data']}.")


def seeds():
    acc, out = load("accuracy.json"), []
    for name in ("default, fp32", "tokens, fp32", "reference, batch 128, safe rule + clipping"):
        r = acc[name]
        stopped = {int(s.split(":")[0].split()[1]): s for s in r.get("stopped", [])}
        seeds_all = sorted(set(r["seeds"]) | set(stopped), key=lambda s: (s > 100, s))
        by_seed, lr = dict(zip(r["seeds"], r["test_acc"])), r.get("max_lr_by_seed", {})
        cells = [(f"{s}: {by_seed[s]:.2f}" if s in by_seed else f"{s}: diverged")
                 + (f" ({lr[str(s)]:.2e})" if str(s) in lr else "") for s in seeds_all]
        lrs = f"{min(r['max_lr']):.2e}-{max(r['max_lr']):.2e}"
        out.append([name, len(seeds_all), acc_cell(r), lrs, "; ".join(cells), machine(r)])
    return table(["row", "seeds", "test acc (%)", "max LR", "per seed: test acc (max LR)", "machine"], out)


def tokens():
    acc, rows = load("accuracy.json"), []
    defaults = [n for n in acc if n.startswith("default, fp32")]  # the default, on each machine it ran on
    for name in [*defaults, *(n for n in acc if n.startswith(("tokens", "distilled")))]:  # every row over positions
        r = acc[name]
        rows.append([name, len(r["seeds"]), acc_cell(r), ", ".join(f"{a:.2f}" for a in r["test_acc"]),
                     f"{min(r['max_lr']):.2e}-{max(r['max_lr']):.2e}",
                     "-".join(f"{f(h[-1]['train_acc'] for h in r['histories']):.1f}" for f in (min, max)),
                     f"{r['sec_per_epoch']:.1f}", machine(r)])
    return table(["row", "seeds", "test acc (%)", "per seed", "max LR", "train acc, last epoch (%)", "s/epoch", "machine"], rows)


def speed():
    d, job, parts = load("speed.json"), load("job_vs_commit.json"), load("step_parts.json")
    ips = d["images_per_s"]
    pipes = table(["batch 256, reference preset", "images/s", "vs reference"],
                  [["reference pipeline (PIL, 2 workers, fp32)", f"{ips['reference']:.0f}", "1.0x"],
                   ["ours (eager)", f"{ips['ours']:.0f}", f"{d['ratio']:.1f}x"],
                   [f"ours + torch.compile ({d['compile_s']:.0f} s to compile)", f"{ips['ours_compiled']:.0f}", f"{d['ratio_compiled']:.1f}x"]])
    step = table(["part of a step (default network, batch 128)", "ms"], [[k, f"{v:.2f}"] for k, v in parts["ms"].items()])
    m = job["mean_seconds"]
    jobs = table(["whole default job", "seconds"], [[f"commit {job['old_commit']}", f"{m['old']:.1f}"], [f"the code of {job['date']} (pooling before BN, fp32 blocks, fused Adam, no per-step sync)", f"{m['new']:.1f}"],
                                                    ["ratio", f"{job['ratio_new_over_old']:.2f}"]])
    return (f"{pipes}\n\n{machine(d)}, {d['data']}.\n\n{step}\n\n{machine(parts)}, {parts['precision']}.\n\n{jobs}\n\n"
            f"{machine(job)}, {job['date']}.")


def notebook():
    """The committed notebook's run: both presets, what each cost."""
    m = load("notebook_run.json")
    runs = [("default (attention over the pooled vector)", m["config"]["lr_rule"], m["default"]),
            ("tokens (attention over the 64 positions)", m["tokens_config"]["lr_rule"], m["tokens"])]
    rows = [[name, f"**{r['history'][-1]['test_acc']:.2f}**", f"{r['history'][-1]['train_acc']:.2f}",
             f"{r['max_lr']:.2e} ({rule})", f"{sum(r['epoch_seconds']):.0f} s ({sum(r['epoch_seconds']) / len(r['history']):.1f} s/epoch)"]
            for name, rule, r in runs]
    return (table(["preset", "test acc (%)", "train acc (%)", "max LR (rule)", "training"], rows)
            + f"\n\n{len(m['default']['history'])} epochs each, {m['data']}, {machine(m)} ({m['device']}, {m['precision']}); "
              f"Run all took {m['wall_s'] / 60:.0f} minutes.")


# the accuracy.json row that stands for each preset as its recipe trains it now (a test checks the match)
PRESET_ROWS = {"default": "default, fp32", "tokens": "tokens preset, min/5 + crop2, AMD EPYC AVX512",
               "distilled": "distilled preset, 12-epoch teacher, AMD EPYC AVX512, 1 thread",
               "reference": "reference, batch 128, safe rule + clipping"}


def presets():
    """Each preset as it is now, over seeds (accuracy.json)."""
    acc, rows = load("accuracy.json"), []
    for preset, name in PRESET_ROWS.items():
        r = acc[name]
        train = [h[-1]["train_acc"] for h in r["histories"]]
        rows.append([preset, f"**{acc_cell(r)}**", len(r["seeds"]), f"{min(train):.1f}-{max(train):.1f}",
                     f"{min(r['max_lr']):.2e}-{max(r['max_lr']):.2e}", r["config"]["precision"], machine(r)])
    return (table(["preset", "test acc (%)", "seeds", "train acc, last epoch (%)", "max LR", "precision", "machine"], rows)
            + "\n\n24 epochs, CIFAR-10 (local JPEG-derived copy); rows of `accuracy.json`.")


# the gap between the default and the tokens preset, one change per rung (the notebook prints the same rows)
LADDER = [("the default", "default, fp32, AMD EPYC AVX512, 1 thread"),
          ("+ LR rule min/5", "default, min/5, AMD EPYC AVX512, 1 thread"),
          ("+ attention over the 64 positions", "tokens without the position code, min/5, AMD EPYC AVX512, 1 thread"),
          ("+ the position code", "tokens preset, min/5, AMD EPYC AVX512"),
          ("+ shifts of up to 2 pixels = tokens", "tokens preset, min/5 + crop2, AMD EPYC AVX512")]


def ladder():
    """From the default to the tokens preset, one change at a time (accuracy.json)."""
    acc, rows = load("accuracy.json"), []
    for rung, name in LADDER:
        r = acc[name]
        train = [h[-1]["train_acc"] for h in r["histories"]]
        rows.append([rung, acc_cell(r), ", ".join(f"{a:.2f}" for a in r["test_acc"]),
                     f"{min(train):.1f}-{max(train):.1f}", machine(r)])
    return (table(["rung", "test acc (%)", "seeds 0-2", "train acc, last epoch (%)", "machine"], rows)
            + "\n\n24 epochs, fp32, CIFAR-10 (local JPEG-derived copy); rows of `accuracy.json`.")


LEVERS = [("the default", "default, fp32, AMD EPYC AVX512, 1 thread"),
          ("the tokens recipe", "tokens preset, min/5 + crop2, AMD EPYC AVX512"),
          ("+ 2 heads", "tokens recipe + 2 heads, AMD EPYC AVX512, 1 thread"),
          ("+ relative position bias", "tokens recipe + relative position bias, AMD EPYC AVX512, 1 thread"),
          ("+ 2 heads + relative position bias", "tokens recipe + 2 heads + relative position bias, AMD EPYC AVX512, 1 thread"),
          ("+ a 6-epoch teacher's labels", "tokens recipe + distillation from a ResNet-9, AMD EPYC AVX512, 1 thread"),
          ("+ the 6-epoch teacher + 2 heads + relative position bias",
           "tokens recipe + 2 heads + relative position bias + distillation, AMD EPYC AVX512, 1 thread"),
          ("+ a 12-epoch teacher's labels = distilled", "distilled preset, 12-epoch teacher, AMD EPYC AVX512, 1 thread")]


def levers():
    """The changes measured against 80% on the AVX512 machine, with the weights' average where it was kept."""
    acc, rows = load("accuracy.json"), []
    for label, name in LEVERS:
        r = acc[name]
        train = [h[-1]["train_acc"] for h in r["histories"]]
        ema = r.get("ema_test_acc")
        rows.append([label, f"{r['params']:,}", acc_cell(r), ", ".join(f"{a:.2f}" for a in r["test_acc"]),
                     f"{min(train):.1f}-{max(train):.1f}",
                     f"{statistics.mean(ema):.2f} ({', '.join(f'{a:.2f}' for a in ema)})" if ema else "-", machine(r)])
    teachers = "; ".join(f"{name}, {t['params']:,} parameters, {t['precision']} on {machine(t)}: {t['test_acc']:.2f}% on "
                         f"the test set" for name, t in load("teacher.json").items())
    teacher = f"\n\nThe teachers ({teachers}); each trained once for all seeds of its rows."
    return (table(["change", "params", "test acc (%)", "per seed (0, 1, ...)", "train acc, last epoch (%)",
                   "weights' moving average: test acc (%)", "machine"], rows)
            + "\n\n24 epochs, fp32, CIFAR-10 (local JPEG-derived copy); rows of `accuracy.json`." + teacher)


def lever_speed():
    """Each lever's epoch beside the default's, and a distilled job's parts, timed alone (lever_speed.json)."""
    d = load("lever_speed.json")
    c = d["cases"]
    rows = [[name, f"{r['ms_per_step']:.0f}", f"{r['s_per_epoch']:.1f}", f"{r['over_default']:.2f}", r["precision"]]
            for name, r in c.items()]
    t = load("teacher.json")[load("accuracy.json")[PRESET_ROWS["distilled"]]["teacher_name"]]  # the preset's teacher
    job = lambda name, epochs: epochs * c[name]["s_per_epoch"] / 60  # noqa: E731  minutes
    teacher_min = job("teacher (ResNet-9, batch 512)", t["epochs"])
    return (table(["training step", "ms/step", "s/epoch", "x the default's epoch", "precision"], rows)
            + f"\n\n{machine(d)}, {d['rounds']} alternating rounds of {d['steps']} steps. A job, estimated from these: the default's "
            f"24 epochs {job('default', 24):.0f} minutes; the teacher's {t['epochs']} epochs {teacher_min:.0f}, once; "
            f"then each distilled run {job('distilled preset', 24):.0f} (the tokens preset: {job('tokens recipe', 24):.0f})."
            f" The first distilled run, teacher included, takes about {(teacher_min + job('distilled preset', 24)) / job('default', 24):.0f}x "
            f"the default's time; each later one, the teacher's logits reused, {c['distilled preset']['over_default']:.1f}x.")


def attention_speed():
    d = load("attention_speed.json")
    rows = [[p, f"{d[p]['mean_ms']['written out']:.1f}", f"{d[p]['mean_ms']['fused']:.1f}", f"{d[p]['fused_over_written_out']:.2f}"]
            for p in ("best", "tokens", "tokens, 16 x 16 map") if p in d]
    return (table(["network (batch 128)", "AM written out (ms/step)", "scaled_dot_product_attention (ms/step)", "fused / written out"], rows)
            + f"\n\n{machine(d)}, {d['best']['precision']}, {d['rounds']} alternating rounds of {d['steps']} steps.")


TABLES = {"ablation": ablation, "levers": levers, "lever_speed": lever_speed, "ladder": ladder, "notebook": notebook, "presets": presets, "attention_speed": attention_speed, "lr_spread": lr_spread, "stability": stability, "seeds": seeds, "speed": speed,
          "tokens": tokens}
MARK = re.compile(r"<!-- table: (\w+) -->\n(?:(?!<!-- table: ).)*?<!-- /table -->", re.S)  # one table, maybe empty


def render(text):
    return MARK.sub(lambda m: f"<!-- table: {m.group(1)} -->\n{TABLES[m.group(1)]()}\n<!-- /table -->", text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check; exit 1 if a table is stale")
    a = p.parse_args(argv)
    stale = []
    for f in PAGES:
        text = f.read_text()
        new = render(text)
        if new != text:
            stale.append(f.name)
            if not a.check:
                f.write_text(new)
    print(("stale: " if a.check else "rewrote: ") + (", ".join(stale) or "none"))
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
