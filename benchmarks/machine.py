"""What every benchmark script shares: the machine it ran on, a timer, and the matmul peak.

Each script prints `describe()` first, so a figure always comes with its CPU, GPU, versions,
commit and load. Trainer ratios are measured against the ceiling (`ceiling_kernels`: the fastest
of several matmuls and convolutions in the trainer's dtype, found by `fastest`) in the same run,
with the trainer's FLOPs as FlopCounterMode counts them (`step_flops`); `theoretical_peak` gives
the CPU's FLOP/cycle x clock beside it. Rollout rooflines still use `matmul_peak()`.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

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


def cpu_info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def fp32_flops_per_cycle(info: dict[str, str]) -> tuple[int, str]:
    """fp32 FLOPs one core can issue per cycle (FMA = 2 FLOPs), and the assumption behind it.

    Read from the vendor, family and flags only: the FMA unit count is not in /proc/cpuinfo.
    """
    flags = set(info.get("flags", "").split())
    amd, family = info.get("vendor_id") == "AuthenticAMD", int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags:
        if amd and family >= 0x1A:
            return 64, "Zen 5: two 512-bit FMA pipes (2 x 16 lanes x 2)"
        if amd:
            return 32, "Zen 4: AVX-512 on two 256-bit FMA pipes (2 x 8 lanes x 2)"
        return 64, "Intel AVX-512, assuming two 512-bit FMA units (one: 32)"
    if "fma" in flags and "avx2" in flags:
        return 32, "two 256-bit FMA units (2 x 8 lanes x 2)"
    return 8, "SSE: one 128-bit add and one multiply per cycle"


def theoretical_peak(threads: int = 1) -> tuple[float, str]:
    """fp32 FLOP/s of `threads` cores at the clock /proc/cpuinfo reports (nominal; a boost clock
    raises the real ceiling, a VM may hide it), and how it was reckoned."""
    info = cpu_info()
    per_cycle, assumption = fp32_flops_per_cycle(info)
    hz = float(info.get("cpu MHz", "0") or 0) * 1e6
    return per_cycle * hz * threads, (f"{per_cycle} fp32 FLOP/cycle ({assumption}) x {hz / 1e9:.2f} GHz "
                                      f"(/proc/cpuinfo) x {threads} core(s)")


@dataclass
class Kernel:
    """One call of a dense kernel and the FLOPs it does."""

    name: str
    step: Callable[[], object]
    flops: float


def _matmul(n: int, dtype, device) -> Kernel:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return Kernel(f"matmul {n}^2 {str(dtype).removeprefix('torch.')}", lambda: a @ b, 2 * n**3)


def _conv(batch: int, channels: int, hw: int, kernel: int, dtype, device) -> Kernel:
    """A same-padded conv, channels-last (oneDNN's and cuDNN's fast layout)."""
    x = torch.randn(batch, channels, hw, hw, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, kernel, kernel, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    flops = 2 * batch * hw * hw * channels * channels * kernel * kernel
    return Kernel(f"conv {kernel}x{kernel} {channels}ch {batch}x{hw}^2 channels-last {str(dtype).removeprefix('torch.')}",
                  lambda: F.conv2d(x, w, padding=kernel // 2), flops)


def ceiling_kernels(device: str | torch.device = "cpu") -> list[Kernel]:
    """Candidates for the trainer's ceiling in its dtype (CPU fp32, GPU bf16): matmuls of several
    sizes (BLAS) and large convolutions (oneDNN / cuDNN; on an AVX-512 CPU these beat BLAS)."""
    device = torch.device(device)
    if device.type == "cuda":
        dtype = torch.bfloat16
        return [_matmul(4096, dtype, device), _matmul(8192, dtype, device),
                _conv(64, 256, 56, 3, dtype, device), _conv(256, 1024, 14, 1, dtype, device)]
    dtype = torch.float32
    return [_matmul(512, dtype, device), _matmul(1024, dtype, device), _matmul(2048, dtype, device),
            _conv(32, 64, 56, 3, dtype, device), _conv(16, 128, 28, 3, dtype, device),
            _conv(1, 1024, 32, 1, dtype, device)]


def reference_kernels(device: str | torch.device = "cpu") -> list[Kernel]:
    """Kernels the trainer does not use, printed for scale: bf16 matmuls on the CPU."""
    device = torch.device(device)
    return [] if device.type == "cuda" else [_matmul(512, torch.bfloat16, device), _matmul(2048, torch.bfloat16, device)]


def fastest(kernels: list[Kernel], seconds: float, rounds: int) -> tuple[Kernel, dict[str, float]]:
    """The kernel of the highest FLOP/s (best of `rounds` alternating trials each) and every rate."""
    rates = {k.name: 0.0 for k in kernels}
    for _ in range(rounds):
        for k in kernels:
            rates[k.name] = max(rates[k.name], timed(k.step, seconds) * k.flops)
    best = max(kernels, key=lambda k: rates[k.name])
    return best, rates


def best_rates(steps: list, seconds: float, rounds: int) -> list[float]:
    """Calls per second of each step, best of `rounds` trials, the steps' trials alternating."""
    best = [0.0] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            best[i] = max(best[i], timed(step, seconds))
    return best


def print_ceiling(device, threads: int, seconds: float, rounds: int):
    """Measure and print the ceiling candidates (and the theoretical peak); return the fastest kernel."""
    best, rates = fastest(ceiling_kernels(device), seconds, min(rounds, 2))
    print(f"ceiling candidates (one trial of {seconds} s each, best of {min(rounds, 2)}):")
    for name, rate in rates.items():
        print(f"  {name:45s} {rate / 1e9:7.1f} GFLOP/s{'  <- the ceiling' if name == best.name else ''}")
    for kernel in reference_kernels(device):
        rate = max(timed(kernel.step, seconds) for _ in range(min(rounds, 2))) * kernel.flops
        print(f"  {kernel.name:45s} {rate / 1e9:7.1f} GFLOP/s  (reference: the trainer runs fp32)")
    if device.type == "cpu":
        theory, how = theoretical_peak(threads)
        if theory:
            share = rates[best.name] / theory
            nominal_ghz = float(cpu_info()["cpu MHz"]) / 1e3
            boost = (f" (so the core ran at >= {share * nominal_ghz:.2f} GHz: a boost clock, which a VM's "
                     "/proc/cpuinfo does not show)") if share > 1 else ""
            print(f"theoretical fp32 peak: {theory / 1e9:.1f} GFLOP/s = {how}; the ceiling is {share:.0%} of it{boost}")
        else:
            print("theoretical fp32 peak: unknown (/proc/cpuinfo gives no clock)")
    print(f"trainer trials alternate with {best.name}; trials of {seconds} s, best of {rounds}")
    return best
