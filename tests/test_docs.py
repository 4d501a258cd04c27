"""README.md, docs/ and the notebook speak of the software, and docs/' tables match the results they cite."""
import json
import re
import statistics

import nbformat
import pytest

from conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"

# words about how the project was made, which a reader outside the team cannot check
DEVELOPMENT = [r"\bthis session\b", r"\bsessions?'", r"\btoday('s)?\b", r"\bspeed work\b", r"\bissues? \d+", r"#\d+\b",
               r"\blent\b", r"\bso far\b", r"\bwe tried\b", r"\bfor now\b"]


def texts():
    yield "README.md", (ROOT / "README.md").read_text()
    for f in sorted((ROOT / "docs").glob("*.md")):
        yield f"docs/{f.name}", f.read_text()
    nb = nbformat.read(ROOT / "Assignment_9_Solution.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        text = cell.source if cell.cell_type == "markdown" else "\n".join(re.findall(r"#.*", cell.source))
        yield f"notebook cell {i}", text


@pytest.mark.parametrize("name,text", list(texts()))
def test_no_sentence_speaks_of_the_development(name, text):
    found = [m.group(0) for p in DEVELOPMENT for m in re.finditer(p, text, re.I)]
    assert not found, f"{name}: {found}"


def test_the_word_check_catches_what_it_is_for():
    bad = "In this session's runs, today's code (issue 12) was lent a GPU, so far."
    assert len([p for p in DEVELOPMENT if re.search(p, bad, re.I)]) >= 5


def test_docs_tables_are_generated_from_the_committed_results():
    from benchmarks import docs_tables

    for f in docs_tables.PAGES:
        text = f.read_text()
        assert docs_tables.render(text) == text, f"{f.name} is stale: run python -m benchmarks.docs_tables"
    assert all(f"<!-- table: {name} -->" in "".join(p.read_text() for p in docs_tables.PAGES)
               for name in docs_tables.TABLES)


def test_readme_links_every_doc_and_the_pages_stay_short():
    readme = (ROOT / "README.md").read_text()
    assert all(f"docs/{f.name}" in readme for f in (ROOT / "docs").glob("*.md"))
    assert len(readme.split()) <= 1500, "README.md is a front page: at most 1,500 words"
    assert sum(len(f.read_text().split()) for f in (ROOT / "docs").glob("*.md")) <= 6000, "docs/: at most 6,000 words"


def test_every_option_a_benchmark_script_documents_is_one_it_accepts(capsys):
    """A benchmark's docstring that names --some-flag its command line lacks sends its reader to an error."""
    import ast
    import importlib

    checked = 0
    for f in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = ast.get_docstring(ast.parse(f.read_text())) or ""
        doc = re.sub(r"python train\.py[^\n]*", "", doc)  # train.py's own options, which a script may name
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", doc))
        module = importlib.import_module(f"benchmarks.{f.stem}")
        if not named or not hasattr(module, "main"):
            continue
        with pytest.raises(SystemExit):
            module.main(["--help"])
        usage, _, rest = capsys.readouterr().out.partition("\n\n")  # then the description: the docstring itself
        accepted = set(re.findall(r"--[a-z][a-z0-9-]+", usage + rest.partition("options:")[2]))
        assert named <= accepted, f"{f.name} documents {sorted(named - accepted)}, which it does not accept"
        checked += 1
    assert checked >= 5


def test_the_presets_table_quotes_each_preset_as_its_recipe_trains_it():
    """README's table of presets cites one accuracy row each: that row must have trained the preset's recipe as it is
    (a setting the row does not record is at RunConfig's default)."""
    from benchmarks import teacher
    from benchmarks.docs_tables import PRESET_ROWS
    from models.checks import from_dict
    from train import RunConfig, recipe
    rows = json.loads((RESULTS / "accuracy.json").read_text())
    assert set(PRESET_ROWS) == {"default", "tokens", "distilled", "reference"}
    for preset, name in PRESET_ROWS.items():
        ran = from_dict(RunConfig, rows[name]["config"])
        now = recipe(preset, precision=ran.precision, seed=ran.seed, compile=ran.compile)
        assert ran.resume_settings() == now.resume_settings(), preset
        if now.teacher:  # and it learned from the teacher that python -m benchmarks.teacher makes
            assert rows[name]["teacher_name"] == teacher.name(teacher.parser().parse_args([])), preset


def mean(name, seeds=None):
    r = ACC[name]
    return statistics.mean(a for s, a in zip(r["seeds"], r["test_acc"]) if seeds is None or s in seeds)


def seed(name, s):
    return mean(name, [s])


ACC = json.loads((RESULTS / "accuracy.json").read_text()) if (RESULTS / "accuracy.json").exists() else {}
LADDER = [name for _, name in __import__("benchmarks.docs_tables").docs_tables.LADDER]
TEACHERS = ("tokens recipe + distillation from a ResNet-9, AMD EPYC AVX512, 1 thread",
            "distilled preset, 12-epoch teacher, AMD EPYC AVX512, 1 thread")
# a number written in prose (its first group), and the value the rows give it: a difference of means is taken from
# the rows themselves, never from the rounded means a table prints
PROSE = [
    ("docs/results.md", r"min/5 alone costs the default network ([\d.]+) points", lambda: mean(LADDER[0]) - mean(LADDER[1])),
    ("docs/results.md", r"positions adds ([\d.]+) on top of it", lambda: mean(LADDER[2]) - mean(LADDER[1])),
    ("docs/results.md", r"the position code ([\d.]+) more", lambda: mean(LADDER[3]) - mean(LADDER[2])),
    ("docs/results.md", r"the shifts ([\d.]+) more", lambda: mean(LADDER[4]) - mean(LADDER[3])),
    ("docs/results.md", r"its mean is ([\d.]+) points above it", lambda: mean(TEACHERS[1]) - 80),
    ("docs/results.md", r"standard error of ([\d.]+)",
     lambda: statistics.stdev(ACC[TEACHERS[1]]["test_acc"]) / len(ACC[TEACHERS[1]]["test_acc"]) ** 0.5),
    ("docs/results.md", r"four seeds of five, by ([\d.]+) points on average",
     lambda: mean(TEACHERS[1]) - mean(TEACHERS[0])),
    ("docs/results.md", r"on seed 0 it adds ([\d.]+) points", lambda: seed("reference + residual", 0) - seed("reference", 0)),
    ("docs/results.md", r"Dropping the flip costs ([\d.]+) points",
     lambda: seed("reference", 0) - seed("reference - augmentation", 0)),
    ("docs/results.md", r"gains nothing there \(([\d.]+) against", lambda: seed("reference + BN", 0)),
    ("docs/results.md", r"gains nothing there \([\d.]+ against ([\d.]+)%", lambda: seed("reference", 0)),
    ("docs/results.md", r"seeds 0 and 2 reached ([\d.]+) and", lambda: seed("reference + scale inside", 0)),
    ("docs/results.md", r"seeds 0 and 2 reached [\d.]+ and ([\d.]+)%", lambda: seed("reference + scale inside", 2)),
    ("docs/results.md", r"softmax seed 1 ended at ([\d.]+)%", lambda: seed("reference + scale inside", 1)),
    ("docs/results.md", r"ended at ([\d.]+)% without the clipping", lambda: seed("reference, batch 128 (5 seeds)", 3)),
    ("docs/results.md", r"and at ([\d.]+)% with it", lambda: seed("reference, batch 128, safe rule + clipping", 3)),
]


@pytest.mark.parametrize("page,pattern,value", PROSE)
def test_a_number_in_prose_is_the_rows_value_at_its_printed_precision(page, pattern, value):
    text = " ".join((ROOT / page).read_text().split())
    found = re.search(pattern, text)
    assert found, f"{page} no longer says {pattern!r}: update PROSE"
    written = found.group(1)
    assert written == f"{value():.{len(written.partition('.')[2])}f}", (page, pattern, written, value())


def test_the_prose_check_catches_a_rounded_difference():
    """1.03 is the difference of the two rungs' rounded means (76.65 - 75.62); the rows' own means give 1.02."""
    written, value = "1.03", mean(LADDER[0]) - mean(LADDER[1])
    assert round(mean(LADDER[0]), 2) - round(mean(LADDER[1]), 2) == pytest.approx(1.03)
    assert written != f"{value:.2f}"


def test_every_line_of_the_dropped_table_is_a_recorded_row():
    """Each result in results.md's table of what was tried and dropped is a row's, on the machine and in the precision
    the line names, in the file it names: archive.json when the change is marked †, else accuracy.json."""
    from benchmarks.docs_tables import MACHINES, LADDER as RUNGS, PRESET_ROWS, REFERENCE, TEACHER, acc_cell, short
    archive = json.loads((RESULTS / "archive.json").read_text())["rows"]
    above = {*PRESET_ROWS.values(), *(n for _, n in RUNGS + TEACHER + REFERENCE), *MACHINES}
    section = (ROOT / "docs" / "results.md").read_text().split("## What was tried and dropped")[1]
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| change ")]
    assert len(lines) >= 40
    for line in lines:
        change, seeds, accs, where = [c.strip() for c in line.strip("|").split(" | ")]
        rows = archive if change.endswith("†") else ACC
        for i, (n, acc) in enumerate(zip(seeds.split(" / "), accs.split(" / "))):
            machine = where.split(" / ")[min(i, where.count(" / "))]
            assert any(len(r["seeds"]) + len(r.get("stopped", [])) == int(n) and acc_cell(r) == acc
                       and (f"{short(r)}, {r['config']['precision']}" == machine if machine != "above" else name in above)
                       for name, r in rows.items()), line
