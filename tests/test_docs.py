"""README.md, docs/ and the notebook speak of the software, and docs/' tables match the results they cite."""
import re

import nbformat
import pytest

from conftest import ROOT

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


def test_readme_links_every_doc_and_stays_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert all(f"docs/{f.name}" in readme for f in (ROOT / "docs").glob("*.md"))
    assert len(readme.splitlines()) <= 260


def test_every_option_a_benchmark_script_documents_is_one_it_accepts(capsys):
    """A benchmark's docstring that names --some-flag its command line lacks sends its reader to an error."""
    import ast
    import importlib

    checked = 0
    for f in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = ast.get_docstring(ast.parse(f.read_text())) or ""
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
    """README's table of presets cites one accuracy row each: that row must have trained the preset's recipe as it is."""
    import json

    from benchmarks import teacher
    from benchmarks.common import as_today
    from benchmarks.docs_tables import PRESET_ROWS
    from train import recipe
    from models.checks import from_dict
    from train import RunConfig
    rows = json.loads((ROOT / "benchmarks" / "results" / "accuracy.json").read_text())
    assert set(PRESET_ROWS) == {"default", "tokens", "distilled", "reference"}
    for preset, name in PRESET_ROWS.items():
        ran = as_today(rows[name]["config"])
        if ran["preset"] != preset:  # a row run before its preset existed: the same network under another name
            assert from_dict(RunConfig, ran).model_config() == recipe(preset).model_config(), preset
            ran = ran | {"preset": preset}
        now = recipe(preset, precision=ran["precision"], seed=ran["seed"], compile=ran["compile"]).resume_settings()
        assert ran == now, (preset, {k: (v, now[k]) for k, v in ran.items() if now[k] != v})
        if now.get("teacher"):  # and it learned from the teacher that python -m benchmarks.teacher makes
            assert rows[name]["teacher_name"] == teacher.name(teacher.parser().parse_args([])), preset
