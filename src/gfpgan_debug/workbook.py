"""``make workbook``: execute every numbered notebook headless and write an HTML report with an index page.

    python -m gfpgan_debug.workbook --out build/workbook [--notebooks notebooks] [--timeout 600]

Each notebook runs in a fresh kernel with ``notebooks/`` as its working directory; the executed copy
(``NN_name.ipynb``) and its HTML export (``NN_name.html``) go to the output folder, beside ``index.html``, which
links them, gives each run time, and shows the doctor's verdict when a notebook wrote ``doctor.json`` into
the folder named by ``$GFPGAN_DEBUG_REPORT_DIR``. Exits 1 if any notebook failed (the others still run).
"""
import argparse
import html
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT_DIR_VAR = "GFPGAN_DEBUG_REPORT_DIR"


@dataclass
class NotebookRun:
    name: str
    seconds: float
    error: str = ""  # empty when the notebook ran to the end

    @property
    def ok(self) -> bool:
        return not self.error


def execute_notebook(path: Path, out_dir: Path, timeout: int = 600) -> NotebookRun:
    """Run one notebook top to bottom in a fresh kernel; write the executed copy and its HTML export."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as failure:
        error = _last_line(str(failure))
    except Exception as failure:  # a kernel that died or never started: report it, go on with the others
        error = f"{type(failure).__name__}: {_last_line(str(failure))}"
    seconds = time.perf_counter() - start
    nbformat.write(notebook, out_dir / path.name)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    (out_dir / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    return NotebookRun(path.stem, seconds, error)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "failed"


def write_index(out_dir: Path, runs, total_seconds: float) -> Path:
    rows = "".join(
        f"<tr><td><a href='{html.escape(run.name)}.html'>{html.escape(run.name)}</a></td>"
        f"<td style='text-align:right'>{run.seconds:.1f} s</td>"
        f"<td style='color:{'#1a7f37' if run.ok else '#cf222e'}'>{'ran to the end' if run.ok else html.escape(run.error)}</td></tr>"
        for run in runs)
    verdict = _doctor_section(out_dir)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>gfpgan-debug workbook</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{padding:.3em .8em;border-bottom:1px solid #ddd}}</style>
</head><body><h1>gfpgan-debug workbook</h1>
<p>Every notebook executed headless on {html.escape(_weights_label())}, in {total_seconds:.0f} s in all.</p>
<table><tr><th>notebook</th><th>run time</th><th>result</th></tr>{rows}</table>{verdict}</body></html>"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    (out_dir / "runs.json").write_text(json.dumps(
        {"total_seconds": total_seconds, "notebooks": [vars(r) for r in runs]}, indent=2))
    return index


def _doctor_section(out_dir: Path) -> str:
    doctor = out_dir / "doctor.json"
    if not doctor.is_file():
        return "<h2>Doctor</h2><p>No notebook wrote a doctor verdict (doctor.json).</p>"
    try:
        data = json.loads(doctor.read_text())
    except ValueError:
        return "<h2>Doctor</h2><p>doctor.json is not valid JSON.</p>"
    items = data if isinstance(data, list) else [data]
    body = "".join(f"<li><b>{html.escape(str(d.get('artifact', '')))}</b>: "
                   f"{html.escape(str(d.get('verdict', d)))}</li>" for d in items)
    return f"<h2>Doctor's verdict</h2><ul>{body}</ul>"


def _weights_label() -> str:
    try:
        from gfpgan_debug.weights import choose_weights

        return str(choose_weights())
    except Exception as error:  # the index still gets written; the notebooks will have said what is wrong
        return f"(no weights: {error})"


def run_workbook(notebooks_dir: Path, out_dir: Path, timeout: int = 600) -> int:
    from tqdm.auto import tqdm

    paths = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no numbered notebooks (NN_name.ipynb) in {notebooks_dir}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ[REPORT_DIR_VAR] = str(out_dir.resolve())
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    runs, start = [], time.perf_counter()
    for path in (bar := tqdm(paths, desc="workbook", unit="notebook")):
        bar.set_postfix_str(path.stem)
        runs.append(execute_notebook(path, out_dir, timeout))
    index = write_index(out_dir, runs, time.perf_counter() - start)
    for run in runs:
        print(f"{run.name:<36} {run.seconds:7.1f} s  {'ok' if run.ok else 'FAILED: ' + run.error}")
    print(f"report: {index}")
    return 0 if all(run.ok for run in runs) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfpgan_debug.workbook", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default=str(ROOT / "notebooks"))
    parser.add_argument("--out", default=str(ROOT / "build" / "workbook"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    return run_workbook(Path(args.notebooks), Path(args.out), args.timeout)


if __name__ == "__main__":
    sys.exit(main())
