"""results.json -> results.md: the tables README.md shows, each target marked met or missed."""
import math


def fmt_seconds(s: dict) -> str:
    """'2.31 s (2.20-2.52, n=5)' from a summary."""
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.2f} s (n=1)"
    return f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f}, n={s['n']})"


def fmt_mb(s: dict) -> str:
    if not s or s.get("median") is None:
        return "-"
    return f"{s['median']:,.0f} MB" + (f" ({s['min']:,.0f}-{s['max']:,.0f})" if s["n"] > 1 else "")


def mark(ok) -> str:
    return "met" if ok else "**missed**"


def measured(section) -> bool:
    return isinstance(section, dict) and section.get("measured", True)


def latency_section(latency: dict, targets: dict) -> list:
    lines = ["## Runtime latency (one 512x512 forward)", ""]
    if not measured(latency):
        return lines + [f"Not measured: {latency.get('why')}.", ""]
    for model, data in latency.items():
        if not measured(data):
            lines += [f"**{model}**: not measured: {data.get('why')}", ""]
            continue
        peak = data["peak"]
        lines += [f"**{model}** ({data['parameters'] / 1e6:.1f} M parameters, {data['gflops']:.1f} GFLOP per forward "
                  f"by torch.utils.flop_counter; measured peak {peak['gflops_median']:.0f} GFLOP/s = median of a "
                  f"{peak['size']}x{peak['size']} float32 matmul on {peak['threads']} threads, best "
                  f"{peak['gflops_best']:.0f}" + "".join(f"; on {n} thread: {p['gflops_median']:.0f}" for n, p in
                                                          data.get("peaks", {}).items() if int(n) != peak["threads"])
                  + "; each setting's fraction is of the peak on its own thread count)", "",
                  "| runtime | setting | seconds, median (min-max) | GFLOP/s | of peak | image vs eager | best |",
                  "| --- | --- | --- | ---: | ---: | --- | --- |"]
        for row in data["settings"]:
            if "error" in row:
                lines.append(f"| {row['runtime']} | {row['setting']} | does not run: {row['error'][:90]} | | | | |")
                continue
            best = data["best"].get(row["runtime"], {}).get("setting") == row["setting"]
            agree = "agrees" if row["honest"] else f"**differs** ({row['image_max_abs_vs_eager']:.2g})"
            lines.append(f"| {row['runtime']} | {row['setting']} | {fmt_seconds(row['seconds'])} | "
                         f"{row['gflops_per_s']:.1f} | {row['fraction_of_peak']:.1%} | {agree} | {'best' if best else ''} |")
        fastest = min(data["best"].values(), key=lambda r: r["median_seconds"]) if data["best"] else None
        if fastest:
            goal = targets["fraction_of_peak"]
            lines += ["", f"Fastest: {fastest['setting']} at {fastest['fraction_of_peak']:.1%} of peak; target "
                      f">= {goal:.0%}: {mark(fastest['fraction_of_peak'] >= goal)}."]
        ceiling = data.get("conv_ceiling")
        if ceiling:
            lines += ["", f"Ceiling: the model's own {ceiling['conv_calls']} convolutions ({ceiling['share_of_flops']:.1%} "
                      f"of its FLOPs), each timed alone on 1 thread, run at {ceiling['gflops_per_s']:.0f} GFLOP/s = "
                      f"{ceiling['fraction_of_peak']:.0%} of the 1-thread peak; even if everything else cost nothing, "
                      f"no runtime that runs them as they are could do better (benchmarks/latency.py conv_ceiling)."]
        lines.append("")
    return lines


def search_section(search: dict, targets: dict) -> list:
    lines = ["## Layer-by-layer search (eager reference vs ONNX Runtime, every module output)", ""]
    if not measured(search):
        return lines + [f"Not measured: {search.get('why')}.", ""]
    for model, data in search.items():
        routes = data["routes"]
        lines += [f"**{model}** (each route a child process under a {data['memory_limit_gb']:g} GB memory guard; "
                  f"wall time includes Python start-up and model loading)", "",
                  "| route | wall time | peak RSS | tensors fetched / compared | outcome |",
                  "| --- | --- | --- | --- | --- |"]
        for name, label in (("library", "library: runtimes.onnx_first_divergence (streamed)"),
                            ("naive", "naive: every node output in one ORT session"),
                            ("polygraphy", "Polygraphy: run --onnxrt --onnx-outputs '*' --save-outputs, then compare")):
            route = routes[name]
            if route.get("stopped"):
                outcome = f"stopped by the guard: {route['stopped']}"
            elif route.get("completed"):
                outcome = route["divergence"] or "no divergence found (all agree)"
            else:
                outcome = "failed: " + (route["runs"][-1].get("failed", "") or "?")[:120]
            counts = (f"{route['tensors_exposed']} / {route['tensors_compared']}" if "tensors_exposed" in route else "-")
            time = fmt_seconds(route["seconds"]) if not route.get("stopped") else f">= {route['seconds']['median']:.0f} s"
            peak = fmt_mb(route["peak_mb"]) if not route.get("stopped") else f"> {route['peak_mb']['median']:,.0f} MB"
            lines.append(f"| {label} | {time} | {peak} | {counts} | {outcome} |")
        phases = routes["library"].get("runs", [{}])[-1].get("search", {}).get("phases")
        if phases:
            lines += ["", "Where the library's time goes (last run, seconds): " + ", ".join(
                f"{name} {phases[name]:.1f}" for name in ("load_model", "candidate", "reference_and_compare", "search")
                if name in phases) + " (candidate: read the ONNX file, expose the module outputs, create the session, "
                "run; reference_and_compare: one eager forward comparing each layer as it runs)"]
        bound = " (at least: Polygraphy was stopped)" if data["polygraphy_is_lower_bound"] else ""
        lines += ["", f"- speed-up vs Polygraphy: {data['speedup_vs_polygraphy']:.1f}x{bound}; target >= "
                  f"{targets['speedup_vs_polygraphy']:g}x: {mark(data['speedup_vs_polygraphy'] >= targets['speedup_vs_polygraphy'])}",
                  f"- peak memory vs Polygraphy: {data['memory_ratio_vs_polygraphy']:.2f}{' (at most)' if bound else ''}; "
                  f"target <= 1/3: {mark(data['memory_ratio_vs_polygraphy'] <= targets['memory_ratio_vs_polygraphy'])}",
                  f"- speed-up vs naive: {data['speedup_vs_naive']:.1f}x, memory ratio {data['memory_ratio_vs_naive']:.2f}",
                  f"- library peak memory {data['library_peak_mb']:,.0f} MB; target < {targets['search_peak_mb']:,} MB: "
                  f"{mark(data['library_peak_mb'] < targets['search_peak_mb'])}"]
        floor = data.get("import_floor")
        if floor:
            lines.append(f"- start-up floor of any route that runs eager PyTorch (interpreter, import torch, "
                         f"onnxruntime and the library): {floor['seconds']['median']:.1f} s, "
                         f"{floor['peak_mb']['median']:,.0f} MB; the library's whole process is "
                         f"{routes['library']['seconds']['median'] - floor['seconds']['median']:.1f} s and "
                         f"{routes['library']['peak_mb']['median'] - floor['peak_mb']['median']:,.0f} MB above it")
        if data.get("in_process_speedup_vs_polygraphy"):
            lines.append(f"- past start-up (library: its search phase; Polygraphy: its own reported Runtime plus the "
                         f"comparison's search phase): {data['in_process_speedup_vs_polygraphy']:.1f}x faster "
                         f"(reported, not the target's measure)")
        if data.get("times_plain_forwards") is not None:
            ratio = data["times_plain_forwards"]
            lines.append(f"- library search (in-process, model loaded) / (one plain eager + one plain ORT forward, "
                         f"{data['plain_eager_plus_ort_seconds']:.2f} s): {ratio:.1f}x (whole process: "
                         f"{data['times_plain_forwards_whole_process']:.1f}x); target <= {targets['times_plain_forwards']:g}x: "
                         f"{mark(ratio <= targets['times_plain_forwards'])}")
        lines.append("")
    return lines


def doctor_section(doctor: dict, targets: dict) -> list:
    lines = ["## Doctor", ""]
    if not measured(doctor):
        return lines + [f"Not measured: {doctor.get('why')}.", ""]
    lines += ["| model | case | wall time | peak RSS | verdict | under 60 s |", "| --- | --- | --- | --- | --- | --- |"]
    for model, data in doctor.items():
        if not measured(data):
            lines.append(f"| {model} | | not measured: {data.get('why', '')[:150]} | | | |")
            continue
        ok = data["seconds"]["median"] < targets["doctor_seconds"]
        lines.append(f"| {model} | {data['case']} | {fmt_seconds(data['seconds'])} | {fmt_mb(data['peak_mb'])} | "
                     f"{(data['verdict'] or '')[:100]} | {mark(ok)} |")
    return lines + [""]


def workbook_section(workbook: dict, targets: dict) -> list:
    lines = ["## Workbook (`python -m gfpgan_debug.workbook`)", ""]
    if not measured(workbook):
        return lines + [f"Not measured: {workbook.get('why')}.", ""]
    lines += ["| notebook | seconds, median | min-max | ran to the end |", "| --- | ---: | --- | --- |"]
    for name, run in workbook["notebooks"].items():
        spread = f"{run['range']['min']:.1f}-{run['range']['max']:.1f}" if "range" in run else ""
        lines.append(f"| {name} | {run['seconds']:.1f} | {spread} | {'yes' if run['ok'] else 'no: ' + run['error'][:80]} |")
    total = workbook["total_seconds"]
    spread = f"{workbook['total']['min']:.1f}-{workbook['total']['max']:.1f}" if "total" in workbook else ""
    lines += [f"| **total** | **{total:.1f}** | {spread} | |", "",
              f"{workbook['note']}; target: all under {targets['workbook_seconds']:.0f} s: "
              f"{mark(total < targets['workbook_seconds'])}.", ""]
    return lines


def markdown(results: dict) -> str:
    targets = results["targets"]
    m = results["machine"]
    lines = ["# gfpgan-debug benchmarks", "",
             f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['threads']} torch threads, "
             f"{m['memory_gb']} GB; torch {m['versions'].get('torch')}, onnxruntime {m['versions'].get('onnxruntime')}, "
             f"polygraphy {m['versions'].get('polygraphy')}; {m['date']}. Other work on the host: {m['shared_host']} "
             f"(load average {m['load_average'][0]:.1f} at the start, {m.get('load_average_end', [math.nan])[0]:.1f} "
             f"at the end)." + (" **--quick run.**" if results.get("quick") else ""), ""]
    when = results.get("measured_at", {})
    if when:
        lines += ["Measured: " + "; ".join(
            f"{section} finished at {w['at'][11:16]} UTC (load average {w['load_average']['start']:.1f} -> "
            f"{w['load_average']['end']:.1f}{', commit ' + w['commit'][:7] if w.get('commit') else ''})"
            for section, w in when.items()) + ".", ""]
    lines += [headline(results)]
    lines += latency_section(results["latency"], targets)
    lines += search_section(results["layer_search"], targets)
    lines += doctor_section(results["doctor"], targets)
    lines += workbook_section(results["workbook"], targets)
    setup = results["setup"]
    lines += ["## Set-up", ""]
    if measured(setup) and "seconds" in setup:
        lines += [f"`make setup` on a fresh clone: {setup['seconds']} s, venv {setup['venv_gb']} GB; measured "
                  f"{setup['measured']}. Reported, not targeted.", ""]
    else:
        lines += [f"Not measured: {setup.get('why')}.", ""]
    return "\n".join(lines) + "\n"


def headline(results: dict) -> str:
    """One row per target of issue 8: what was measured, the target, met or missed."""
    targets = results["targets"]
    rows = []
    latency = results["latency"] if measured(results["latency"]) else {}
    for model, data in latency.items():
        if measured(data) and data.get("best"):
            fastest = min(data["best"].values(), key=lambda r: r["median_seconds"])
            runtime = next(k for k, v in data["best"].items() if v is fastest)
            rows.append((f"fastest runtime, {model}", f"{runtime} ({fastest['setting']}): {fastest['median_seconds']:.2f} s, "
                         f"{fastest['gflops_per_s']:.0f} GFLOP/s = {fastest['fraction_of_peak']:.0%} of the matmul peak "
                         f"measured on the same threads ({fastest['gflops_per_s'] / fastest['fraction_of_peak']:.0f})", f">= {targets['fraction_of_peak']:.0%} of peak",
                         fastest["fraction_of_peak"] >= targets["fraction_of_peak"]))
    search = results["layer_search"] if measured(results["layer_search"]) else {}
    for model, data in search.items():
        library, polygraphy = data["routes"]["library"], data["routes"]["polygraphy"]
        peer = (f"Polygraphy {polygraphy['stopped']}" if polygraphy["stopped"]
                else f"Polygraphy {polygraphy['seconds']['median']:.0f} s, {polygraphy['peak_mb']['median']:,.0f} MB")
        at_least = "at least " if data["polygraphy_is_lower_bound"] else ""
        rows.append((f"layer search vs Polygraphy, {model}",
                     f"library {library['seconds']['median']:.0f} s, {library['peak_mb']['median']:,.0f} MB; {peer}: "
                     f"{at_least}{data['speedup_vs_polygraphy']:.1f}x faster, {data['memory_ratio_vs_polygraphy']:.2f} of its memory",
                     ">= 10x faster, <= 1/3 of its memory",
                     data["speedup_vs_polygraphy"] >= targets["speedup_vs_polygraphy"]
                     and data["memory_ratio_vs_polygraphy"] <= targets["memory_ratio_vs_polygraphy"]))
        if data.get("times_plain_forwards") is not None:
            rows.append((f"layer search vs plain forwards, {model}",
                         f"{data['times_plain_forwards']:.1f}x one eager + one ORT forward "
                         f"({data['plain_eager_plus_ort_seconds']:.1f} s)", "<= 3x",
                         data["times_plain_forwards"] <= targets["times_plain_forwards"]))
        rows.append((f"layer search peak memory, {model}", f"{data['library_peak_mb']:,.0f} MB", "< 3 GB",
                     data["library_peak_mb"] < targets["search_peak_mb"]))
    doctor = results["doctor"] if measured(results["doctor"]) else {}
    for model, data in doctor.items():
        if measured(data):
            rows.append((f"doctor, {model}", f"{data['seconds']['median']:.0f} s, {data['peak_mb']['median']:,.0f} MB",
                         "< 60 s", data["seconds"]["median"] < targets["doctor_seconds"]))
    workbook = results["workbook"]
    if measured(workbook):
        rows.append(("workbook, all notebooks", f"{workbook['total_seconds']:.0f} s ({len(workbook['notebooks'])} notebooks)",
                     "< 300 s", workbook["total_seconds"] < targets["workbook_seconds"]))
    else:
        rows.append(("workbook, all notebooks", f"not measured: {workbook.get('why')}", "< 300 s", None))
    setup = results["setup"]
    if measured(setup) and "seconds" in setup:
        rows.append(("`make setup`, fresh clone", f"{setup['seconds']} s, venv {setup['venv_gb']} GB (the lead's CI run)",
                     "reported", None))
    lines = ["| what | measured | target | |", "| --- | --- | --- | --- |"]
    for what, value, target, ok in rows:
        lines.append(f"| {what} | {value} | {target} | {'' if ok is None else mark(ok)} |")
    return "\n".join(lines) + "\n"
