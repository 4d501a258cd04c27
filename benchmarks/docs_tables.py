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

from benchmarks.common import RESULTS, ROOT, machine

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # every page with generated tables

# the accuracy.json row that stands for each preset as its recipe trains it now (a test checks the match)
PRESET_ROWS = {"default": "default, fp32", "tokens": "tokens preset, min/5 + crop2, AMD EPYC AVX512",
               "distilled": "distilled preset, 12-epoch teacher, AMD EPYC AVX512, 1 thread",
               "reference": "reference, batch 128, safe rule + clipping"}
# the gap between the default and the tokens preset, one change per rung (the notebook prints the same rows)
LADDER = [("the default", "default, fp32, AMD EPYC AVX512, 1 thread"),
          ("+ LR rule min/5", "default, min/5, AMD EPYC AVX512, 1 thread"),
          ("+ attention over the 64 positions", "tokens without the position code, min/5, AMD EPYC AVX512, 1 thread"),
          ("+ the position code", "tokens preset, min/5, AMD EPYC AVX512"),
          ("+ shifts of up to 2 pixels = tokens", "tokens preset, min/5 + crop2, AMD EPYC AVX512")]
TEACHER = [("the tokens preset", "tokens preset, min/5 + crop2, AMD EPYC AVX512"),
           ("+ a 6-epoch teacher's labels", "tokens recipe + distillation from a ResNet-9, AMD EPYC AVX512, 1 thread"),
           ("+ a 12-epoch teacher's labels = distilled", "distilled preset, 12-epoch teacher, AMD EPYC AVX512, 1 thread")]
REFERENCE = [("reference, batch 256", "reference"), ("+ the residual", "reference + residual"),
             ("+ batch norm", "reference + BN"), ("+ the scale inside the softmax", "reference + scale inside"),
             ("- the flip", "reference - augmentation"), ("+ strides 2, 2, 1 (A = 8)", "reference + strides 2,2,1"),
             ("batch 128", "reference, batch 128"), ("batch 128, seeds 0-4", "reference, batch 128 (5 seeds)"),
             ("max LR 9.77e-2 (torch-lr-finder's steepest slope)", "failure: steepest-slope LR")]
# every other accuracy.json row a page cites, for the table of machines
MACHINES = ["default, fp32, AMD EPYC AVX512", "default, fp32, AMD EPYC", "default, fp32, H200",
            "tokens preset, min/5 + crop2, H200"]


def short(row):
    """A machine's short name in the tables: the CPU's make, AVX512 where recorded, and /threads; or the GPU."""
    name, _, threads = machine(row).partition(", ")
    make = {"Intel(R) Xeon(R) Processor": "Xeon", "AMD EPYC": "EPYC"}.get(name, name.removeprefix("NVIDIA "))
    return make + ("-AVX512" if row.get("cpu_capability") == "AVX512" else "") + (f"/{threads.split()[0]}" if threads else "")


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


def span(values, fmt=".1f"):
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def train_cell(row):
    return span([h[-1]["train_acc"] for h in row["histories"]]) if row.get("histories") else "-"


def rows_table(pairs, ema=False):
    """One row of accuracy.json a line: its label, mean, seeds, last-epoch train accuracy."""
    acc, out = load("accuracy.json"), []
    for label, name in pairs:
        r = acc[name]
        line = [label, len(r["seeds"]), acc_cell(r), ", ".join(f"{a:.2f}" for a in r["test_acc"]), train_cell(r)]
        if ema:
            e = r.get("ema_test_acc")
            line.append(f"{statistics.mean(e):.2f} ({', '.join(f'{a:.2f}' for a in e)})" if e else "-")
        out.append(line)
    return table(["", "seeds", "test acc (%)", "per seed", "train acc, last epoch (%)"]
                 + (["weights' moving average (%)"] if ema else []), out)


def presets():
    """Each preset as it is now, over seeds (accuracy.json)."""
    acc = load("accuracy.json")
    rows = [[preset, f"**{acc_cell(acc[name])}**", len(acc[name]["seeds"]), span(acc[name]["max_lr"], ".2e")]
            for preset, name in PRESET_ROWS.items()]
    return table(["preset", "test acc (%)", "seeds", "max LR"], rows)


def teacher():
    teachers = "; ".join(f"{t['epochs']} epochs, {t['test_acc']:.2f}% on the test set" for t in load("teacher.json").values())
    t = next(iter(load("teacher.json").values()))
    return (rows_table(TEACHER, ema=True) + f"\n\nThe teachers, ResNet-9 at half width ({t['params']:,} parameters, "
            f"`teacher.json`): {teachers}.")


def chance():
    """The reference and the same network with the residual, first two epochs (chance_start.json)."""
    d, rows = load("chance_start.json"), []
    for data in ("first 5,120 images", "all 50,000 images"):
        for name, runs in d[data].items():
            rows.append([data, name, ", ".join(runs), *(span([h[e]["test_acc"] for h in runs.values()]) for e in (0, 1))])
    s = d["settings"]
    return (table(["training images", "network", "seeds", "test acc after epoch 1 (%)", "after epoch 2 (%)"], rows)
            + f"\n\nMax LR {s['max_lr']:g}, batch {s['batch_size']}, no clipping; "
              f"test accuracy on the first {s['test_subset']:,} test images.")


def off_chance(history):
    """The first epoch whose test accuracy passes 12% (chance: 10%), or '-'."""
    return next((str(e["epoch"]) for e in history if e["test_acc"] > 12), "-")


def course():
    """The course's run and one change at a time from it (course.json): test accuracy per seed after epoch 8."""
    ladder = {name: r for name, r in load("course.json")["rows"].items() if r["trained_epochs"] >= 8}
    if any(r["seeds"] != [0, 1, 2] for r in ladder.values()):
        raise ValueError("course.json: the table says seeds 0, 1, 2 for every row")
    rows = [[name, r["change"], ", ".join(f"{h[7]['test_acc']:.2f}" for h in r["histories"]),
             ", ".join(off_chance(h) for h in r["histories"])] for name, r in ladder.items()]
    return (table(["run", "change", "test acc after epoch 8 (%)", "off chance from epoch"], rows)
            + "\n\nSeeds 0, 1, 2 in that order in each cell; off chance: test accuracy above 12%.")


def mechanism():
    """Each layer's gradient and Adam's step through epoch 1 of the course's run and its changes (course.json)."""
    traces = load("course.json")["mechanism"]
    layers = list(next(iter(traces.values()))["grad"][0])
    late = lambda t, key, layer: statistics.mean(s[layer] for s in t[key][-20:])  # noqa: E731
    rows = [[layer, *(f"{t['grad'][0][layer]:.1e}, {late(t, 'grad', layer):.1e}" for t in traces.values()),
             *(f"{t['step'][0][layer]:.3f}, {late(t, 'step', layer):.3f}" for t in traces.values())] for layer in layers]
    names = [f"{n}{'' if 'seed' in n else ', seed 0'}" for n in traces]
    return (table(["layer", *(f"gradient: {n}" for n in names), *(f"step / LR: {n}" for n in names)], rows)
            + "\n\nEach cell: at the first step, then the mean over the last 20 steps of epoch 1; gradient: root mean square "
              "over the layer's weights; step / LR: the root mean square of the change Adam made, over the LR.")


def notebook():
    """The committed notebook's run: both presets, what each cost."""
    m = load("notebook_run.json")
    runs = [("default (attention over the pooled vector)", m["config"]["lr_rule"], m["default"]),
            ("tokens (attention over the 64 positions)", m["tokens_config"]["lr_rule"], m["tokens"])]
    rows = [[name, f"**{r['history'][-1]['test_acc']:.2f}**", f"{r['history'][-1]['train_acc']:.2f}",
             f"{r['max_lr']:.2e} ({rule})", f"{sum(r['epoch_seconds']):.0f} s ({sum(r['epoch_seconds']) / len(r['history']):.1f} s/epoch)"]
            for name, rule, r in runs]
    return (table(["preset", "test acc (%)", "train acc (%)", "max LR (rule)", "training"], rows)
            + f"\n\n{len(m['default']['history'])} epochs each, {machine(m)} ({m['device']}, {m['precision']}); "
              f"Run all took {m['wall_s'] / 60:.0f} minutes.")


def machines():
    """Where every result the pages cite ran, in which precision, and what an epoch cost there."""
    acc, rows = load("accuracy.json"), []
    legend = {short(r): machine(r) for r in acc.values()}
    names = dict.fromkeys([*PRESET_ROWS.values(), *(n for _, n in LADDER + TEACHER + REFERENCE), *MACHINES])
    for name in names:
        r = acc[name]
        rows.append([f"`{name}`", short(r), r["config"]["precision"], acc_cell(r), f"{r['sec_per_epoch']:.1f}", r["date"]])
    m = load("notebook_run.json")
    for preset in ("default", "tokens"):
        rows.append([f"notebook run, {preset}", short(m), m["precision"], f"{m[preset]['history'][-1]['test_acc']:.2f}",
                     f"{statistics.mean(m[preset]['epoch_seconds']):.1f}", m["date"]])
    for t in load("teacher.json").values():
        rows.append([f"teacher, {t['epochs']} epochs", short(t), t["precision"], f"{t['test_acc']:.2f}",
                     f"{t['wall_s'] / 60:.0f} min in all", t["date"]])
    c = load("chance_start.json")
    rows.append(["`chance_start.json`", short(c), c["settings"]["precision"], "-", "-", c["date"]])
    return (table(["short name", "machine, as the results record it"], sorted(legend.items())) + "\n\n"
            + table(["result", "machine", "precision", "test acc (%)", "s/epoch", "date"], rows))


def gpu():
    """The default job on the GPU (gpu_check.json)."""
    g, rows = load("gpu_check.json"), []
    for key, label in (("job_native", "eager"), ("job_fp16", "eager, fp16 with a gradient scaler"),
                       ("job_compiled", "compiled (CUDA graphs)")):
        j = g[key]
        s = j["epoch_seconds"]
        rows.append([label, j["precision"], f"{s[0]:.2f}", f"{statistics.mean(s[1:]):.2f}", f"{j['train_s']:.0f}",
                     f"{j['seconds']:.0f}"])
    return (table(["default job", "precision", "epoch 1 (s)", "epochs 2-24, mean (s)", "training (s)", "whole job (s)"], rows)
            + f"\n\n{g['machine']}, torch {g['torch']}.")


TABLES = {"notebook": notebook, "presets": presets, "teacher": teacher, "chance": chance, "course": course, "mechanism": mechanism,
          "machines": machines, "gpu": gpu, "ladder": lambda: rows_table(LADDER), "reference": lambda: rows_table(REFERENCE),
          "preset_seeds": lambda: rows_table([(f"{preset} (`{name}`)", name) for preset, name in PRESET_ROWS.items()])}
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
