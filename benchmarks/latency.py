"""Latency of one 512x512 forward per runtime and setting, against the machine's own measured peak.

    python benchmarks/latency.py --model demo|official --files build/bench/files --out latency.json [--repeats 5]

    FLOPs      counted once with torch.utils.flop_counter on the eager forward (2 per multiply-add of every
               convolution and matrix product; element-wise work is not counted)
    GFLOP/s    FLOPs / median seconds of one forward
    peak       GFLOP/s of a large float32 matrix product (torch.mm, n x n, 2 n^3 FLOPs), measured on all threads
               and on one
    fraction   GFLOP/s / the peak on the same number of threads as the setting

Settings tried: eager (all threads, and one); TorchScript, scripted and traced, as loaded, frozen (torch.jit.freeze) and
through torch.jit.optimize_for_inference; LibTorch (the C++ runner, its own timer); ONNX Runtime at each graph
optimisation level, and with 1 and all intra-op threads. A setting counts as honest only when its image
agrees with eager's within compare.default_tolerance; the best honest setting per runtime is reported.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.guard import summary  # noqa: E402

RUNTIMES = ("eager", "torchscript", "libtorch", "onnxruntime")


def matmul_peak(size: int, repeats: int, threads: int) -> dict:
    """GFLOP/s of ``a @ b`` for float32 (size, size) matrices: 2 size^3 / seconds, on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool and the BLAS's buffers
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    flops = 2 * size**3
    times = summary(seconds)
    return dict(size=size, threads=threads, seconds=times, gflops_median=flops / times["median"] / 1e9,
                gflops_best=flops / times["min"] / 1e9)


def count_flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, return_rgb=True, randomize_noise=False)
    return int(counter.get_total_flops())


def conv_ceiling(model, x, threads: int = 1) -> dict:
    """How fast this model's own convolutions can go: every conv2d call of one forward timed alone (same
    shapes, random values, best of 3, on ``threads`` threads); ceiling = their FLOPs / the sum of those times.

    A runtime that fuses nothing cannot beat it by much. A model of few channels at large spatial sizes (the
    demo: 2 to 4 channels at 512x512) is bound by memory traffic, not arithmetic, so its ceiling sits far
    below the matrix-product peak whatever the runtime.
    """
    import torch.nn.functional as F

    calls, original = [], F.conv2d

    def recording(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((tuple(input.shape), tuple(weight.shape), bias is not None, stride, padding, dilation, groups))
        return original(input, weight, bias, stride, padding, dilation, groups)

    F.conv2d = recording
    try:
        with torch.inference_mode():
            model(torch.as_tensor(x), randomize_noise=False)
    finally:
        F.conv2d = original
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    flops, seconds = 0, 0.0
    with torch.inference_mode():
        for shape, weight_shape, has_bias, stride, padding, dilation, groups in calls:
            a, w = torch.randn(shape), torch.randn(weight_shape)
            b = torch.randn(weight_shape[0]) if has_bias else None
            out = original(a, w, b, stride, padding, dilation, groups)
            best = []
            for _ in range(3):
                start = time.perf_counter()
                original(a, w, b, stride, padding, dilation, groups)
                best.append(time.perf_counter() - start)
            seconds += min(best)
            flops += 2 * out.numel() * (weight_shape[1] * weight_shape[2] * weight_shape[3])
    torch.set_num_threads(before)
    return dict(threads=threads, conv_calls=len(calls), conv_flops=flops, seconds=seconds,
                gflops_per_s=flops / seconds / 1e9)


def forward_times(runtime: str, artifact, x: np.ndarray, repeats: int, warmup: int) -> list:
    """Seconds of each of ``repeats`` forwards (after ``warmup`` unmeasured ones), as runtimes.run times them."""
    from gfpgan_debug import runtimes

    seconds, image = [], None
    frames = np.repeat(x, warmup + repeats, axis=0)
    for i, frame in enumerate(frames):
        timings = []
        outputs = runtimes.run(runtime, artifact, frame[None], timings=timings)
        if i >= warmup:
            seconds += timings
        image = outputs["image"]
    return seconds, image


def libtorch_times(pt_path: str, x: np.ndarray, repeats: int, warmup: int, threads: int):
    """The C++ runner on warmup + repeats frames in one process; its own per-frame timer."""
    from gfpgan_debug.libtorch import run_runner

    frames, seconds = run_runner(Path(pt_path), [x] * (warmup + repeats), threads=threads, size=x.shape[-1])
    return seconds[warmup:], frames[-1]["image"]


def ort_session(onnx_path: str, level: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def ort_times(session, x: np.ndarray, repeats: int, warmup: int):
    name = session.get_inputs()[0].name
    for _ in range(warmup):
        session.run(["image"], {name: x})
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = session.run(["image"], {name: x})[0]
        seconds.append(time.perf_counter() - start)
    return seconds, image


def settings(files: dict, mode: str, threads: int):
    """(runtime, setting name, what to run, intra-op threads or None for the default) for every setting to try.

    mode "all": every setting (the demo model); "main" (the official model, about 10 s per forward here):
    those that won on the demo model or that a user would try first; "quick": one per runtime.
    """
    from gfpgan_debug import runtimes
    from gfpgan_debug.compat import torch_deprecations_silenced

    def loaded(path, kind):
        def load():
            module = runtimes.load_torchscript(path)
            with torch_deprecations_silenced():
                if kind == "frozen":
                    return torch.jit.freeze(module)
                if kind == "optimize_for_inference":  # freezes, then folds conv-bn, fuses, may use MKLDNN
                    return torch.jit.optimize_for_inference(module)
            return module
        return load

    script, trace = files["torchscript"], files["torchscript_trace"]
    every = [
        ("eager", f"{threads} threads", None, threads, "all main quick"),
        ("eager", "1 thread", None, 1, "all main"),  # on an oversubscribed host fewer threads wait less
        ("torchscript", "script, torch.jit.load", loaded(script, "loaded"), threads, "all quick"),
        ("torchscript", "script, frozen", loaded(script, "frozen"), threads, "all"),
        ("torchscript", "script, optimize_for_inference", loaded(script, "optimize_for_inference"), threads, "all"),
        ("torchscript", "trace, torch.jit.load", loaded(trace, "loaded"), threads, "all"),
        ("torchscript", "trace, frozen", loaded(trace, "frozen"), threads, "all"),
        ("torchscript", "trace, optimize_for_inference", loaded(trace, "optimize_for_inference"), threads, "all"),
        ("torchscript", "trace, frozen, 1 thread", loaded(trace, "frozen"), 1, "all main"),
        ("libtorch", "C++ runner, script .pt", script, threads, "all quick"),
        ("libtorch", "C++ runner, trace .pt", trace, threads, "all"),
        ("libtorch", "C++ runner, trace .pt, 1 thread", trace, 1, "all main"),
        ("onnxruntime", f"ORT_DISABLE_ALL, {threads} threads", "ORT_DISABLE_ALL", threads, "all"),
        ("onnxruntime", f"ORT_ENABLE_BASIC, {threads} threads", "ORT_ENABLE_BASIC", threads, "all"),
        ("onnxruntime", f"ORT_ENABLE_EXTENDED, {threads} threads", "ORT_ENABLE_EXTENDED", threads, "all main"),
        ("onnxruntime", f"ORT_ENABLE_ALL, {threads} threads", "ORT_ENABLE_ALL", threads, "all main quick"),
        ("onnxruntime", "ORT_ENABLE_ALL, 1 thread", "ORT_ENABLE_ALL", 1, "all main"),
    ]
    return [(runtime, name, how, n) for runtime, name, how, n, modes in every if mode in modes.split()]


def measure(model_name: str, files_dir: Path, repeats: int, mode: str, peak_size: int) -> dict:
    from benchmarks.models import build_model
    from gfpgan_debug import compare
    from tqdm.auto import tqdm

    files = json.loads((files_dir / model_name / "files.json").read_text())
    threads = torch.get_num_threads()
    model, _ = build_model(model_name)
    x = np.load(files["input"])
    peaks = {n: matmul_peak(peak_size, repeats=max(repeats, 3), threads=n) for n in sorted({1, threads})}
    torch.set_num_threads(threads)
    peak = peaks[threads]
    flops = count_flops(model, torch.from_numpy(x))
    ceiling = conv_ceiling(model, x, threads=1)
    ceiling["fraction_of_peak"] = ceiling["gflops_per_s"] / peaks[1]["gflops_median"]
    ceiling["share_of_flops"] = ceiling["conv_flops"] / flops
    rows, reference = [], None
    for runtime, name, how, n in tqdm(settings(files, mode, threads), desc=f"latency {model_name}", leave=False):
        # TorchScript's profiling executor specialises and optimises the graph during its first two calls
        warmup = 2 if runtime in ("torchscript", "libtorch") and mode != "quick" else 1
        try:
            if runtime == "eager":
                with compare.torch_threads(n):
                    seconds, image = forward_times("eager", model, x, repeats, warmup)
                if reference is None:
                    reference = image  # the first setting: eager with the default threads
            elif runtime == "torchscript":
                with compare.torch_threads(n):
                    seconds, image = forward_times("torchscript", how(), x, repeats, warmup)
            elif runtime == "libtorch":
                seconds, image = libtorch_times(how, x, repeats, warmup, n)
            else:
                seconds, image = ort_times(ort_session(files["onnx"], how, n), x, repeats, warmup)
        except Exception as error:  # a setting that does not run is reported, not fatal
            rows.append(dict(runtime=runtime, setting=name, error=f"{type(error).__name__}: {str(error)[:200]}"))
            continue
        times = summary(seconds)
        max_abs = float(np.abs(image.astype(np.float64) - reference).max())
        rows.append(dict(runtime=runtime, setting=name, threads=n, seconds=times,
                         gflops_per_s=flops / times["median"] / 1e9,
                         fraction_of_peak=flops / times["median"] / 1e9 / peaks[n]["gflops_median"],
                         image_max_abs_vs_eager=max_abs,
                         honest=bool(max_abs <= compare.default_tolerance(reference))))
    best = {}
    for row in rows:
        if row.get("honest") and (row["runtime"] not in best or row["seconds"]["median"] < best[row["runtime"]]["seconds"]["median"]):
            best[row["runtime"]] = row
    plain_ort = next((r for r in rows if r["runtime"] == "onnxruntime" and "error" not in r
                      and r["setting"].startswith("ORT_ENABLE_ALL") and "1 thread" not in r["setting"]), None)
    eager = next(r for r in rows if r["runtime"] == "eager")
    return dict(model=model_name, parameters=files["parameters"], config=files["config"], flops=flops,
                gflops=flops / 1e9, peak=peak, conv_ceiling=ceiling, peaks={str(n): p for n, p in peaks.items()}, threads=threads, repeats=repeats, settings=rows,
                best={k: dict(setting=v["setting"], median_seconds=v["seconds"]["median"],
                              min_seconds=v["seconds"]["min"], max_seconds=v["seconds"]["max"],
                              gflops_per_s=v["gflops_per_s"], fraction_of_peak=v["fraction_of_peak"])
                      for k, v in best.items()},
                plain_eager_plus_ort_seconds=eager["seconds"]["median"] + (plain_ort["seconds"]["median"] if plain_ort else float("nan")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", choices=("all", "main", "quick"), default="all")
    parser.add_argument("--peak-size", type=int, default=4096)
    args = parser.parse_args(argv)
    result = measure(args.model, Path(args.files), args.repeats, args.mode, args.peak_size)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for runtime, row in result["best"].items():
        print(f"{runtime:12s} {row['setting']:32s} {row['median_seconds']:.3f} s  {row['fraction_of_peak']:.1%} of peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
