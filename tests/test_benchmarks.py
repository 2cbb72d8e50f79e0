"""The benchmark machinery (benchmarks/): the memory guard, the summaries, results.json and results.md.

No timings are asserted: these check that the guard really stops a process over its limit (children
included), that summaries are right, and that a run writes every section the issue asks for.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.guard import MB, run_guarded, summary  # noqa: E402
from benchmarks.report import markdown  # noqa: E402
from benchmarks.run import search_ratios  # noqa: E402

# Allocates 20 MB of touched (resident) memory every 20 ms, up to 800 MB, then exits 0.
ALLOCATE = ("import time\nblocks = []\nfor _ in range(40):\n"
            "    blocks.append(bytearray(b'\\x01') * (20 << 20))\n    time.sleep(0.02)\n")


def test_guard_stops_a_process_over_its_limit_and_says_after_how_long():
    run = run_guarded([sys.executable, "-c", ALLOCATE], limit_bytes=100 * MB)
    assert run.stopped
    assert run.returncode == -9  # SIGKILL
    assert run.peak_mb > 100
    assert run.message.startswith("over 100 MB after ") and run.message.endswith(" s")


def test_guard_counts_the_memory_of_grandchildren_and_kills_them(tmp_path):
    pid_file, finished = tmp_path / "grandchild.pid", tmp_path / "grandchild.finished"
    grandchild = (f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n" + ALLOCATE
                  + f"open({str(finished)!r}, 'w').write('allocated 800 MB and was not stopped')\n")
    parent = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {grandchild!r}])\n"
    run = run_guarded([sys.executable, "-c", parent], limit_bytes=100 * MB)
    assert run.stopped and run.peak_mb > 100
    pid = int(pid_file.read_text())
    while _alive(pid):  # the kill went to the whole process group; wait for the kernel to finish it
        time.sleep(0.05)
    assert not finished.exists()  # killed with its parent, not left to run on


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_guard_stops_a_process_when_the_machine_runs_short_of_memory_and_says_so():
    more_than_the_machine_has = 1 << 50  # 1 PB: MemAvailable is always below it
    run = run_guarded([sys.executable, "-c", "import time; time.sleep(60)"], limit_bytes=1 << 40,
                      min_available_bytes=more_than_the_machine_has)
    assert run.stopped and run.returncode == -9
    assert "the machine had less than" in run.message


def test_guard_lets_a_process_under_its_limit_finish_and_keeps_its_output():
    # the child lives long enough to be polled: a process shorter than one poll is not sampled
    run = run_guarded([sys.executable, "-c", "print('hello from the child'); import time; time.sleep(0.5)"],
                      limit_bytes=1 << 30)
    assert not run.stopped and run.message == ""
    assert run.returncode == 0
    assert "hello from the child" in run.output
    assert 1 < run.peak_mb < 1024  # a Python interpreter is a few MB to some tens of MB resident


def test_a_small_child_of_a_large_parent_is_not_charged_the_parents_memory():
    ballast = bytearray(1200 * 1024 * 1024)  # make this (the parent) process 1.2 GB resident at its peak...
    ballast[::4096] = b"x" * len(ballast[::4096])
    del ballast  # ...but not any more: a forked child still inherits the 1.2 GB high-water mark
    run = run_guarded([sys.executable, "-c", "import time; time.sleep(0.5)"], limit_bytes=1 << 40)
    assert 1 < run.peak_mb < 600  # the child is a bare interpreter; 1.2 GB would be the parent's peak


def test_guard_reports_the_exit_code_of_a_failing_process():
    run = run_guarded([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert run.returncode == 3 and not run.stopped


def test_summary_gives_median_min_max_and_count():
    assert summary([3.0, 1.0, 2.0]) == dict(median=2.0, min=1.0, max=3.0, n=3)
    assert summary([4.0, 1.0, 2.0, 3.0])["median"] == 2.5  # even count: the mean of the middle two
    assert summary([]) == dict(median=None, min=None, max=None, n=0)


def _route(seconds, peak_mb, stopped=""):
    return dict(seconds=summary([seconds]), peak_mb=summary([peak_mb]), stopped=stopped,
                in_process_search_seconds=summary([seconds / 2]))


def test_search_ratios_use_the_guards_figures_for_a_stopped_peer_and_flag_them_as_bounds():
    routes = dict(library=_route(10.0, 4000.0), naive=_route(20.0, 8000.0),
                  polygraphy=_route(76.0, 16500.0, stopped="over 16 GB after 76 s"))
    ratios = search_ratios(routes, plain_forwards_seconds=5.0)
    assert ratios["speedup_vs_polygraphy"] == pytest.approx(7.6)
    assert ratios["memory_ratio_vs_polygraphy"] == pytest.approx(4000 / 16500)
    assert ratios["polygraphy_is_lower_bound"] and not ratios["naive_is_lower_bound"]
    assert ratios["times_plain_forwards"] == pytest.approx(1.0)  # in-process search 5 s / 5 s of forwards


def test_a_setup_only_run_writes_every_section_of_results_json_and_the_markdown(tmp_path):
    out = tmp_path / "bench"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "setup", "--out", str(out)],
                   check=True, cwd=ROOT)
    results = json.loads((out / "results.json").read_text())
    assert {"latency", "layer_search", "doctor", "workbook", "machine", "setup"} <= set(results)
    assert results["setup"]["seconds"] == 262 and results["setup"]["venv_gb"] == 6.6
    assert results["latency"]["measured"] is False  # not run: said so, not left out
    machine = results["machine"]
    assert machine["cpu_model"] and machine["threads"] >= 1 and machine["logical_cpus"] >= 1
    text = (out / "results.md").read_text()
    assert "262 s" in text and "Not measured" in text and machine["cpu_model"] in text


def test_markdown_marks_a_missed_latency_target():
    row = dict(runtime="onnxruntime", setting="ORT_ENABLE_ALL, 2 threads", seconds=summary([2.0, 2.2, 2.4]),
               gflops_per_s=20.0, fraction_of_peak=0.2, image_max_abs_vs_eager=0.0, honest=True)
    latency = dict(demo=dict(parameters=1.9e6, gflops=40.0, peak=dict(gflops_median=100.0, gflops_best=110.0,
                                                                      size=2048, threads=2),
                             settings=[row], best=dict(onnxruntime=dict(setting=row["setting"], median_seconds=2.2,
                                                                        gflops_per_s=20.0, fraction_of_peak=0.2))))
    results = dict(targets=dict(fraction_of_peak=0.6), latency=latency, quick=False,
                   machine=dict(cpu_model="cpu", logical_cpus=2, threads=2, memory_gb=1, versions={}, date="d",
                                shared_host="no", load_average=[0.0]),
                   layer_search=dict(measured=False, why="x"), doctor=dict(measured=False, why="x"),
                   workbook=dict(measured=False, why="x"), setup=dict(measured=False, why="x"))
    text = markdown(results)
    assert "20.0% of peak" in text and "target >= 60%: **missed**" in text
    assert "2.20 s (2.00-2.40, n=3)" in text
    assert "| fastest runtime, demo |" in text and "**missed** |" in text  # the headline row too
