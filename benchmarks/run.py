"""``make bench``: every benchmark of gfpgan-debug in one run; writes results.json and results.md.

    python benchmarks/run.py --out build/bench [--quick] [--only latency layer_search doctor workbook setup]

Each measurement runs in its own child process under the memory guard (benchmarks/guard.py: stopped above
16 GB and reported as "over 16 GB after N s"), one child at a time. Every figure is a median over repeated
runs with min and max; every ratio compares figures measured in this run. ``--quick``: the demo model only,
two repeats, fewer settings, no workbook (unless --only workbook): for developing the benchmarks.
``--commit REV``: measure that commit's library (unpacked under --out) instead of the working tree.
``--only NAME [NAME ...]``: measure these sections and keep the others from the results.json already in --out
(``measured_at`` records when each section was last measured).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.guard import GB, run_guarded, summary  # noqa: E402
from benchmarks.report import markdown  # noqa: E402

SECTIONS = ("latency", "layer_search", "doctor", "workbook", "setup")
LIMIT = 16 * GB
MIN_AVAILABLE = 1 * GB  # shared machine: stop a child before others' processes meet the out-of-memory killer
PY = sys.executable
BIN = Path(sys.executable).parent

# Targets of issue 8.
TARGETS = dict(fraction_of_peak=0.60, speedup_vs_polygraphy=10.0, memory_ratio_vs_polygraphy=1 / 3,
               times_plain_forwards=3.0, search_peak_mb=3 * 1024, doctor_seconds=60.0, workbook_seconds=300.0)

# `make setup` on a fresh clone, measured by the lead (not re-measured here: it would rebuild the venv).
SETUP = dict(seconds=262, venv_gb=6.6, measured="by the lead, in a clean-clone CI run at 10:39 on 2026-11-26 "
             "(same kind of 2-core machine); torch wheels from local disk", targeted=False)


def not_measured(why: str) -> dict:
    return dict(measured=False, why=why)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    versions = {}
    for package in ("torch", "onnxruntime", "onnx", "polygraphy", "numpy"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    import torch

    return dict(cpu_model=cpu, logical_cpus=os.cpu_count(), threads=torch.get_num_threads(),
                memory_gb=round(memory_kb / 2**20, 1), load_average=list(os.getloadavg()),
                python=platform.python_version(), versions=versions,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                shared_host=HOST_NOTE or "not recorded; the load averages below are the evidence of how busy it was")


HOST_NOTE = ""  # --host-note: what the person running the benchmarks knows about other work on the machine
CHILD_ENV = None  # set by --commit: children import gfpgan_debug from a snapshot of that commit


def snapshot(commit: str, out: Path) -> dict:
    """Unpack ``git archive <commit>`` under ``out`` and make children import gfpgan_debug from it, so that the
    benchmarks measure committed code while others edit the working tree. Its build/ is this tree's build/
    (the artefact cache is keyed by weights, structure and options, so sharing it is safe)."""
    global CHILD_ENV
    sha = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    tree = out / f"src-{sha[:12]}"
    if not tree.is_dir():
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / "build").symlink_to(ROOT / "build", target_is_directory=True)
    CHILD_ENV = dict(os.environ, PYTHONPATH=str(tree / "src"))
    return dict(commit=sha, tree=str(tree))


def child(args, what: str, env=None) -> dict:
    """Run one child under the guard; print one line about it; return its record."""
    run = run_guarded(args, limit_bytes=LIMIT, env=env or CHILD_ENV, cwd=ROOT, min_available_bytes=MIN_AVAILABLE)
    status = run.message or ("ok" if run.returncode == 0 else f"exit {run.returncode}")
    print(f"  {what}: {run.seconds:.1f} s, peak {run.peak_mb:.0f} MB, {status}", flush=True)
    if run.returncode != 0 and not run.stopped:
        print("    " + run.output.replace("\n", "\n    "), flush=True)
    return run.to_dict()


def prepare(models, files: Path) -> None:
    for model in models:
        record = child([PY, "benchmarks/models.py", "--model", model, "--files", str(files)], f"prepare {model}")
        if record["returncode"] != 0:
            raise SystemExit(f"could not prepare the {model} model's files:\n{record['output']}")


# ---------------------------------------------------------------------------------------------------------
# 1. latency
# ---------------------------------------------------------------------------------------------------------


def bench_latency(models, files: Path, out: Path, quick: bool) -> dict:
    results = {}
    for model in models:
        target = out / f"latency_{model}.json"
        command = [PY, "benchmarks/latency.py", "--model", model, "--files", str(files), "--out", str(target),
                   "--repeats", str(2 if quick else 3), "--peak-size", "2048" if quick else "4096"]
        mode = "quick" if quick else "all" if model == "demo" else "main"
        record = child(command + ["--mode", mode], f"latency {model}")
        if record["returncode"] != 0:
            results[model] = not_measured(record["message"] or record["output"][-500:])
            continue
        results[model] = json.loads(target.read_text())
        results[model]["child"] = dict(seconds=record["seconds"], peak_mb=record["peak_mb"])
    return results


# ---------------------------------------------------------------------------------------------------------
# 2. layer-by-layer search: library vs Polygraphy vs naive
# ---------------------------------------------------------------------------------------------------------


def route_runs(route: str, model: str, files: Path, out: Path, repeats: int) -> dict:
    """``repeats`` runs of one route; each its own guarded process (Polygraphy: two, timed together)."""
    onnx = json.loads((files / model / "files.json").read_text())
    runs = []
    for i in range(repeats):
        result = out / f"search_{model}_{route}_{i}.json"
        search = [PY, "benchmarks/layer_search.py", route, "--model", model, "--files", str(files), "--out", str(result)]
        if route != "polygraphy":
            record = child(search, f"{route} {model} #{i + 1}")
            parts = [record]
        else:
            saved = out / f"polygraphy_{model}_outputs.json"
            polygraphy = [str(BIN / "polygraphy"), "run", onnx["onnx"], "--onnxrt", "--onnx-outputs", "*",
                          "--load-inputs", onnx["polygraphy_inputs"], "--save-outputs", str(saved)]
            parts = [child(polygraphy, f"polygraphy run {model} #{i + 1}")]
            reported = re.search(r"PASSED \| Runtime: ([0-9.]+)s", parts[0]["output"] or "")
            parts[0]["self_reported_seconds"] = float(reported.group(1)) if reported else None
            if parts[0]["returncode"] == 0:
                parts.append(child(search + ["--polygraphy-outputs", str(saved)], f"polygraphy compare {model} #{i + 1}"))
            saved.unlink(missing_ok=True)
        stopped = next((p["message"] for p in parts if p["stopped"]), "")
        failed = next((p["output"][-300:] for p in parts if p["returncode"] != 0 and not p["stopped"]), "")
        run = dict(seconds=sum(p["seconds"] for p in parts), peak_mb=max(p["peak_mb"] for p in parts),
                   parts=[dict(seconds=p["seconds"], peak_mb=p["peak_mb"], command=" ".join(p["command"][:3]))
                          for p in parts], stopped=stopped, failed=failed)
        if not stopped and not failed and result.is_file():
            run["search"] = json.loads(result.read_text())
            # the work past interpreter start-up and imports: the search phase, plus Polygraphy's own "Runtime"
            run["in_process_seconds"] = run["search"]["phases"]["search"] + sum(
                p.get("self_reported_seconds") or 0.0 for p in parts)
        runs.append(run)
        if stopped:  # the guard's figure is the answer; a second try would only stop again
            break
    seconds = summary([r["seconds"] for r in runs])
    peak = summary([r["peak_mb"] for r in runs])
    completed = [r for r in runs if "search" in r]
    record = dict(seconds=seconds, peak_mb=peak, runs=runs, stopped=runs[-1]["stopped"] if runs else "",
                  completed=len(completed) == len(runs))
    if completed:
        last = completed[-1]["search"]
        record.update(tensors_exposed=last["tensors_exposed"], tensors_compared=last["tensors_compared"],
                      onnx_nodes=last["onnx_nodes"], divergence=last["divergence"],
                      in_process_search_seconds=summary([r["search"]["phases"]["search"] for r in completed]),
                      in_process_seconds=summary([r["in_process_seconds"] for r in completed]))
    return record


def search_ratios(routes: dict, plain_forwards_seconds=None) -> dict:
    """Library vs Polygraphy and naive: time and memory ratios (a stopped peer counts with the guard's figures,
    a lower bound on its real cost), and the library against plain forwards and the memory target."""
    library, polygraphy, naive = routes["library"], routes["polygraphy"], routes["naive"]
    ratios = dict(speedup_vs_polygraphy=polygraphy["seconds"]["median"] / library["seconds"]["median"],
                  memory_ratio_vs_polygraphy=library["peak_mb"]["median"] / polygraphy["peak_mb"]["median"],
                  polygraphy_is_lower_bound=bool(polygraphy["stopped"]),
                  speedup_vs_naive=naive["seconds"]["median"] / library["seconds"]["median"],
                  memory_ratio_vs_naive=library["peak_mb"]["median"] / naive["peak_mb"]["median"],
                  naive_is_lower_bound=bool(naive["stopped"]))
    if plain_forwards_seconds and library.get("in_process_search_seconds"):
        ratios["times_plain_forwards"] = library["in_process_search_seconds"]["median"] / plain_forwards_seconds
        ratios["times_plain_forwards_whole_process"] = library["seconds"]["median"] / plain_forwards_seconds
    if polygraphy.get("in_process_seconds") and library.get("in_process_seconds"):
        ratios["in_process_speedup_vs_polygraphy"] = (polygraphy["in_process_seconds"]["median"]
                                                      / library["in_process_seconds"]["median"])
    ratios["library_peak_mb"] = library["peak_mb"]["median"]
    return ratios


def import_floor(repeats: int = 2) -> dict:
    """What any route that runs eager PyTorch pays before it does anything: start the interpreter and import
    torch, onnxruntime and the library (the torch wheel here is the CUDA build: its libraries are large)."""
    command = [PY, "-c", "import torch, onnxruntime, gfpgan_debug.compare, gfpgan_debug.runtimes"]
    records = [child(command, f"import floor #{i + 1}") for i in range(repeats)]
    return dict(seconds=summary([r["seconds"] for r in records]), peak_mb=summary([r["peak_mb"] for r in records]))


def bench_layer_search(models, files: Path, out: Path, quick: bool, latency: dict) -> dict:
    results = {}
    floor = import_floor()
    for model in models:
        repeats = 2
        routes = {route: route_runs(route, model, files, out, repeats) for route in ("library", "naive", "polygraphy")}
        plain = (latency.get(model) or {}).get("plain_eager_plus_ort_seconds")
        results[model] = dict(routes=routes, **search_ratios(routes, plain), plain_eager_plus_ort_seconds=plain,
                              memory_limit_gb=LIMIT / GB, import_floor=floor)
    return results


# ---------------------------------------------------------------------------------------------------------
# 3. doctor, 4. workbook
# ---------------------------------------------------------------------------------------------------------


def bench_doctor(models, files: Path, out: Path, quick: bool) -> dict:
    results = {}
    for model in models:
        paths = json.loads((files / model / "files.json").read_text())
        artifact = paths.get("broken_torchscript") or paths["torchscript"]
        runs, verdict = [], None
        for i in range(1 if quick else 3):
            report = out / f"doctor_{model}_{i}.json"
            record = child([str(BIN / "gfpgan-debug"), "doctor", "--artifact", artifact, "--weights",
                            paths["checkpoint"], "--json", str(report)], f"doctor {model} #{i + 1}")
            if record["returncode"] not in (0, 1) or record["stopped"]:  # 1: the doctor found a problem
                results[model] = not_measured(record["message"] or record["output"][-400:])
                break
            runs.append(record)
            verdict = json.loads(report.read_text()).get("verdict")
        else:
            results[model] = dict(seconds=summary([r["seconds"] for r in runs]),
                                  peak_mb=summary([r["peak_mb"] for r in runs]), artifact=Path(artifact).name,
                                  case=("the post's bug: loaded with the whole dict and strict=False, then scripted"
                                        if "broken_torchscript" in paths else "the fixed model, scripted"),
                                  verdict=verdict)
    return results


def bench_workbook(out: Path, quick: bool) -> dict:
    """``python -m gfpgan_debug.workbook`` run ``repeats`` times; per notebook and in total, the median with min and
    max (a notebook that failed in any run counts as failed)."""
    tree = Path(CHILD_ENV["PYTHONPATH"]).parent if CHILD_ENV else ROOT  # the measured code's notebooks
    notebooks = sorted((tree / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        return not_measured("no numbered notebooks in notebooks/ yet")
    repeats = 1 if quick else 3
    runs, records = [], []
    for i in range(repeats):
        folder = out / "workbook"
        shutil.rmtree(folder, ignore_errors=True)
        record = child([PY, "-m", "gfpgan_debug.workbook", "--out", str(folder)], f"workbook #{i + 1}")
        runs_file = folder / "runs.json"
        if not runs_file.is_file():
            return not_measured(record["message"] or record["output"][-400:])
        runs.append(json.loads(runs_file.read_text()))
        records.append(record)
    names = [r["name"] for r in runs[0]["notebooks"]]
    per_notebook = {name: [next(n for n in run["notebooks"] if n["name"] == name) for run in runs] for name in names}
    totals = summary([run["total_seconds"] for run in runs])
    return dict(notebooks={name: dict(seconds=summary([n["seconds"] for n in ns])["median"],
                                      range=summary([n["seconds"] for n in ns]),
                                      ok=not any(n["error"] for n in ns),
                                      error=next((n["error"] for n in ns if n["error"]), ""))
                           for name, ns in per_notebook.items()},
                total_seconds=totals["median"], total=totals,
                process_seconds=summary([r["seconds"] for r in records]),
                peak_mb=summary([r["peak_mb"] for r in records]),
                all_ran=all(not n["error"] for run in runs for n in run["notebooks"]), runs=repeats,
                note=f"{repeats} run{'s' if repeats > 1 else ''} of `python -m gfpgan_debug.workbook` over the "
                     f"{len(names)} notebooks of the measured code; each figure the median")


# ---------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--quick", action="store_true", help="demo model only, 2 repeats, fewer settings")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="measure only these sections")
    parser.add_argument("--commit", help="benchmark this commit's library (a snapshot), not the working tree")
    parser.add_argument("--host-note", default="", help="what you know about other work on the machine during "
                                                        "the run (written into the results)")
    args = parser.parse_args(argv)
    global HOST_NOTE
    HOST_NOTE = args.host_note
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = out / "files"
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if args.only and results_path.is_file() else {}
    for section in SECTIONS:
        results.setdefault(section, not_measured("not run yet"))
    wanted = list(args.only) if args.only else list(SECTIONS)
    models = ["demo"] if args.quick else ["demo", "official"]
    results["machine"] = machine()
    results["quick"] = args.quick
    results["targets"] = TARGETS
    source = snapshot(args.commit, out) if args.commit else dict(commit=None, tree=str(ROOT))
    results["machine"]["source"] = source
    print(f"benchmarks -> {out} ({'quick' if args.quick else 'full'}; {', '.join(wanted)}; code: "
          f"{source['commit'] or 'working tree'})", flush=True)

    load_start = results["machine"]["load_average"][0]

    def save(section):  # after each section, so an interrupted run keeps what it measured
        results["machine"]["load_average_end"] = list(os.getloadavg())
        load = dict(start=load_start, end=os.getloadavg()[0])
        finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        results.setdefault("measured_at", {})[section] = dict(at=finished, load_average=load, commit=source["commit"])
        results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        (out / "results.md").write_text(markdown(results))

    if any(s in wanted for s in ("latency", "layer_search", "doctor")):
        prepare(models, files)
    if "setup" in wanted:
        results["setup"] = SETUP
        save("setup")
    if "latency" in wanted:
        results["latency"] = bench_latency(models, files, out, args.quick)
        save("latency")
    if "layer_search" in wanted:
        latency = results["latency"] if results["latency"].get("measured", True) else {}
        results["layer_search"] = bench_layer_search(models, files, out, args.quick, latency)
        save("layer_search")
    if "doctor" in wanted:
        results["doctor"] = bench_doctor(["official"] if not args.quick else ["demo"], files, out, args.quick)
        save("doctor")
    if "workbook" in wanted:
        results["workbook"] = (bench_workbook(out, args.quick) if not args.quick or args.only
                               else not_measured("skipped by --quick"))
        save("workbook")
    print(f"wrote {results_path} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
