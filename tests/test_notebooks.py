"""The numbered notebooks: committed clean, shaped like lessons, and every one runs top to bottom headless."""
import json
from pathlib import Path

import pytest

from gfpgan_debug import workbook

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_symptom", "01_preprocessing", "02_final_outputs", "03_onnx_intermediate_outputs", "04_weights",
            "05_root_cause_and_fix", "06_doctor"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_numbered_notebooks_are_all_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert code and not any(c.get("outputs") for c in code)
    assert not any(c.get("execution_count") for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_its_question_and_ends_with_what_we_learned(path):
    markdown = [text(c) for c in cells(path) if c["cell_type"] == "markdown"]
    assert "?" in markdown[0]
    assert "what we learned" in "\n".join(markdown[-2:]).lower()


def test_every_notebook_runs_headless(tmp_path):
    """What `make workbook` does, on the demo weights: each notebook in a fresh kernel, top to bottom."""
    assert workbook.run_workbook(NOTEBOOKS[0].parent, tmp_path, timeout=600) == 0
    runs = json.loads((tmp_path / "runs.json").read_text())["notebooks"]
    assert [r["name"] for r in runs] == EXPECTED
    assert (tmp_path / "index.html").is_file()
