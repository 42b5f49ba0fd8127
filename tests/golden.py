"""Golden values of the smoke study: every number of its results.nc and fits.nc, pinned.

The smoke study is reproducible to the digit on one machine: same config and seed, same numbers,
on any day, after a kill and resume, before and after a refactor. `tests/golden/smoke.json` holds
its numbers and the machine that made them (PyTorch's CPU capability and the library versions
that pick the kernels). The test compares a fresh smoke study with them: exactly where the
machine is the same; elsewhere the kernels round otherwise, the expert's games diverge, and no
tolerance would be honest, so the test says which part of the fingerprint differs and skips.

After a change that is meant to change the numbers, rewrite the file from a finished smoke study
and commit it with the change (the diff shows what moved):

    python tests/golden.py <folder of a finished smoke study>
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import xarray as xr

GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke.json"
FILES = {"results": "results/scaling/results.nc", "fits": "results/scaling/fits.nc"}


def machine() -> dict[str, str]:
    """What decides the arithmetic of a CPU run: PyTorch's kernels and the libraries' versions."""
    import scipy
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "python": platform.python_version()}


def _values(array: xr.DataArray) -> list:
    """The array's values as nested lists: numbers as float64 (JSON keeps them exactly; NaN as
    None), text as text."""
    if array.dtype.kind in "biuf":
        values = np.asarray(array.values, dtype=float)
        return np.where(np.isnan(values), None, values).tolist()
    return np.asarray(array.values).astype(str).tolist()


def study_values(study: Path) -> dict:
    """Every variable and coordinate of the study's results.nc and fits.nc, and their attributes."""
    out = {}
    for name, relative in FILES.items():
        with xr.open_dataset(study / relative) as data:
            out[name] = {key: {"dims": list(data[key].dims), "values": _values(data[key])}
                         for key in sorted(set(data.coords) | set(data.data_vars))}
            out[name]["(attributes)"] = {"dims": [], "values": {k: str(v) for k, v in sorted(data.attrs.items())}}
    return out


def differences(expected: dict, found: dict) -> list[str]:
    """Where two study_values differ: a line per variable (its largest absolute difference)."""
    lines = []
    for name in FILES:
        for key in sorted(set(expected.get(name, {})) | set(found.get(name, {}))):
            a, b = expected.get(name, {}).get(key), found.get(name, {}).get(key)
            if a is None or b is None:
                lines.append(f"{FILES[name]} {key}: {'new' if a is None else 'missing'}")
                continue
            if a == b:
                continue
            if not all(isinstance(v["values"], list) for v in (a, b)) or a["dims"] != b["dims"]:
                lines.append(f"{FILES[name]} {key}: {a['dims']} {str(a['values'])[:200]} -> {b['dims']} "
                             f"{str(b['values'])[:200]}")
                continue
            try:
                x, y = (np.array(v["values"], dtype=float) for v in (a, b))
            except (TypeError, ValueError):  # text
                lines.append(f"{FILES[name]} {key}: text differs")
                continue
            if x.shape != y.shape:
                lines.append(f"{FILES[name]} {key}: dims {a['dims']} {x.shape} -> {b['dims']} {y.shape}")
            elif not np.array_equal(x, y, equal_nan=True):
                moved = np.nanmax(np.abs(x - y)) if np.isfinite(x - y).any() else float("nan")
                lines.append(f"{FILES[name]} {key}: {int((~((x == y) | (np.isnan(x) & np.isnan(y)))).sum())} of "
                             f"{x.size} values differ (largest by {moved:.3g})")
    return lines


def write_golden(study: Path) -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"machine": machine(), **study_values(study)}, indent=0) + "\n")


if __name__ == "__main__":
    write_golden(Path(sys.argv[1]))
    print(f"wrote {GOLDEN} from {sys.argv[1]} on {machine()}")
