"""Files in and out: atomic writes, loads that name the broken file, and provenance.

Every artifact is written to a temporary name in its folder and renamed into place, so a
killed job never leaves a partial file that looks complete.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch


class DataFileError(RuntimeError):
    """A data, checkpoint or result file is missing, truncated or not what it claims to be."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The mode of a new file as `open` would make it (0644 under the usual umask 022): mkstemp's
# temporary files are 0600, which would hide results from the group in a shared cluster folder.
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)  # the block may have replaced the file: set the mode last
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Load a torch checkpoint on the CPU, naming the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for truncated zips and bad pickles
        raise DataFileError(f"{what} {path} is corrupt or truncated ({type(err).__name__}: {err})") from err


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFileError(f"{what} {path} is not valid JSON ({err})") from err


def require_keys(record: dict, keys, what: str, path) -> dict:
    """`record`, or a DataFileError naming the file and the keys it lacks."""
    missing = [key for key in keys if key not in record]
    if missing:
        raise DataFileError(f"{what} {path} lacks {', '.join(missing)}")
    return record


def open_netcdf(path: str | os.PathLike, what: str):
    """An xarray Dataset from a netCDF file; a missing, empty or corrupt file is named."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise DataFileError(f"{what} {path} is empty")
    try:
        return xr.open_dataset(path)
    except Exception as err:  # the backends raise several types for a file that is not netCDF
        raise DataFileError(f"{what} {path} is not a readable netCDF file ({type(err).__name__}: {err})") from err


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


_PACKAGES = ("ilscaling", "torch", "numpy", "ale-py", "gymnasium", "nle", "snakemake", "scipy", "xarray")


def provenance() -> dict:
    """What produced an artifact: package versions, git commit, machine, device."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def git_commit() -> str | None:
    """Commit of the source tree this package runs from (None outside a git checkout)."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
