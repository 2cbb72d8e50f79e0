"""Run a command in a child process under a memory guard, and summarise repeated measurements.

The guard polls the resident memory (RSS) of the child and all its descendants from /proc every
``poll_seconds``; above ``limit_bytes`` it kills the whole process group and reports
"over 16 GB after 76 s" instead of letting the machine run out of memory. On a shared machine it can also
stop the child when the memory the whole machine has left (MemAvailable) falls below ``min_available_bytes``,
so that a peer near the limit cannot push other people's processes into the kernel's out-of-memory killer. Peak memory is the larger of the
highest polled total and the kernel's own high-water mark for the child (``ru_maxrss`` from ``wait4``, which
sees a spike that falls between two polls, but for one process only).
"""
import os
import signal
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

GB = 1 << 30
MB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class GuardedRun:
    command: List[str]
    seconds: float  # wall time from start to exit (or to the kill)
    peak_mb: float
    returncode: Optional[int]
    stopped: bool  # True when the guard killed it for its memory
    message: str  # "" for a normal exit; "over 16 GB after 76 s" when stopped
    output: str  # the last lines of stdout + stderr

    def to_dict(self) -> dict:
        return asdict(self)


def process_tree(root: int) -> List[int]:
    """``root`` and every descendant, from /proc/<pid>/task/<tid>/children."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    queue.extend(int(child) for child in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (second field of /proc/<pid>/statm, in pages); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0


def hwm_bytes(pid: int) -> int:
    """Peak resident set size of one process since its exec (VmHWM in /proc/<pid>/status); 0 once it is gone.
    It catches a peak that falls between two polls, for the process itself (not its children)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    return sum(rss_bytes(pid) for pid in process_tree(root))


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo: what the machine can still hand out without swapping."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def describe_limit(size_bytes: float) -> str:
    return f"{size_bytes / GB:.3g} GB" if size_bytes >= GB else f"{size_bytes / MB:.3g} MB"


def run_guarded(command: Sequence[str], limit_bytes: int = 16 * GB, poll_seconds: float = 0.05,
                env: Optional[Dict[str, str]] = None, cwd=None, tail_lines: int = 20,
                min_available_bytes: int = 0) -> GuardedRun:
    """Run ``command``; kill it (and its children) as soon as their RSS together exceeds ``limit_bytes``, or
    the machine's available memory falls below ``min_available_bytes``."""
    log_path = f"/tmp/guarded-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log_path, "w+") as log:
        start = time.perf_counter()
        parent_peak = hwm_bytes(os.getpid())  # what a forked child's ru_maxrss starts from (fork copies the peak)
        child = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                 start_new_session=True)  # its own process group, so the kill reaches its children
        peak, stopped, status, usage, short = 0, False, None, None, False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            peak = max(peak, tree_rss_bytes(child.pid), hwm_bytes(child.pid))
            short = bool(min_available_bytes) and available_bytes() < min_available_bytes
            if peak > limit_bytes or short:
                stopped = True
                os.killpg(child.pid, signal.SIGKILL)
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(poll_seconds)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting on a reaped child
        # ru_maxrss alone misleads: on Linux a forked child's high-water mark starts at its parent's peak RSS
        # (fork copies it) and survives the exec, so a child of a pytest that once held 2 GB reports 2 GB. Above
        # the parent's peak it can only be the child's own; below it, the polled figures (RSS of the tree, the
        # child's VmHWM) stand. The margin covers what the parent allocated between reading its peak and forking.
        if usage.ru_maxrss * 1024 > 1.05 * parent_peak + 64 * MB:
            peak = max(peak, usage.ru_maxrss * 1024)
        log.seek(0)
        output = "\n".join(log.read().splitlines()[-tail_lines:])
    os.unlink(log_path)
    message = ""
    if stopped and short and peak <= limit_bytes:
        message = (f"stopped at {describe_limit(peak)} after {seconds:.0f} s: the machine had less than "
                   f"{describe_limit(min_available_bytes)} available")
    elif stopped:
        message = f"over {describe_limit(limit_bytes)} after {seconds:.0f} s"
    return GuardedRun(list(command), seconds, peak / MB, child.returncode, stopped, message, output)


def summary(values: Sequence[float]) -> dict:
    """Median, min and max of repeated measurements, and how many there were."""
    values = [float(v) for v in values]
    if not values:
        return dict(median=None, min=None, max=None, n=0)
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def timed(function, repeats: int, warmup: int = 1) -> dict:
    """Call ``function()`` ``warmup`` times unmeasured, then ``repeats`` times; the summary of the wall times."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return summary(seconds)
