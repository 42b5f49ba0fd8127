"""What every benchmark script shares: the machine it ran on, a timer, and the matmul peak.

Each script prints `describe()` first, so a figure always comes with its CPU, GPU, versions,
commit and load; ratios are measured against `matmul_peak()` in the same run.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "ale-py", "nle", "snakemake")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join([f"python {platform.python_version()}", *found])


def describe(threads: int | None = None) -> str:
    """One paragraph: date, commit, CPU (cores, load), GPU, package versions, torch threads."""
    threads = threads if threads is not None else torch.get_num_threads()
    return (f"date: {datetime.date.today().isoformat()}, commit {commit()}\n"
            f"cpu: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
            f"torch threads {threads}\n"
            f"gpu: {gpu_model() or 'none'}\n"
            f"versions: {versions()}")


def timed(step, seconds: float) -> float:
    """Calls of `step` per second, after one warm-up call, over about `seconds` (CUDA synchronised)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    step()
    sync()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        calls += 1
    sync()
    return calls / (time.perf_counter() - started)


def matmul_peak(seconds: float, device: str | torch.device = "cpu", size: int | None = None) -> float:
    """Dense matmul FLOP/s: fp32 on the CPU (2048^2), bf16 on a GPU (8192^2), the baseline of every ratio."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    size = size or (8192 if on_gpu else 2048)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return timed(lambda: a @ b, seconds) * 2 * size**3


def peak_label(device: str | torch.device = "cpu") -> str:
    return "bf16 matmul peak (8192^2)" if torch.device(device).type == "cuda" else "fp32 matmul peak (2048^2)"
