"""make workbook's runner: real kernels execute numbered notebooks; the index reports each one honestly."""
import json

import nbformat

from gfpgan_debug import workbook


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)


def test_notebooks_are_executed_and_a_failure_is_reported_without_stopping_the_others(tmp_path):
    books, out = tmp_path / "nb", tmp_path / "out"
    books.mkdir()
    write_notebook(books / "00_first.ipynb", "x = 6 * 7", "print(x)")
    write_notebook(books / "01_broken.ipynb", "raise ValueError('on purpose')")
    write_notebook(books / "02_after.ipynb",
                   "import os, json, pathlib\n"
                   "d = pathlib.Path(os.environ['GFPGAN_DEBUG_REPORT_DIR'])\n"
                   "(d / 'doctor.json').write_text(json.dumps({'artifact': 'a.pt', 'verdict': 'weights never loaded'}))")
    write_notebook(books / "notes.ipynb", "raise SystemExit('unnumbered notebooks are not part of the workbook')")

    assert workbook.run_workbook(books, out, timeout=120) == 1

    executed = nbformat.read(out / "00_first.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "42"
    runs = json.loads((out / "runs.json").read_text())
    assert [(r["name"], bool(r["error"])) for r in runs["notebooks"]] == [
        ("00_first", False), ("01_broken", True), ("02_after", False)]
    index = (out / "index.html").read_text()
    assert "on purpose" in index and "02_after.html" in index
    assert "weights never loaded" in index
    assert (out / "01_broken.html").is_file()


def test_an_empty_folder_exits_2(tmp_path):
    assert workbook.run_workbook(tmp_path, tmp_path / "out") == 2
