"""Published results into the project's results Dataset (dims game, flops, params, seed).

Three inputs, all giving the Dataset of `ilscaling.results_file` (what `evaluate.gather_results` writes: loss, kl,
return, return_sem, samples, epochs; NaN where not run; `expert_return` per game). Published results
hold no KL to the expert's policy (no expert distribution was released): `kl` is NaN throughout, so
their fits use the cross entropy whatever fit.loss_metric says, and fits.nc records it.

* the authors' released Atari `experiment_data` (Tuyls et al. 2023): torch pickles mapping a
  budget string such as '1e13' to {num_params: value} in `eval_loss/eval_loss_<Game>.tar`,
  `eval_return/eval_return_<Game>.tar` (+ `eval_return_<Game>_<seed>.tar`) and
  `flop_params_to_samples/flop_params_to_samples_<Game>.tar`;
* their NetHack layout, `<experiment>/<run_id>/eval_loss_overlap_<k>_model_<budget>.tar`
  (a dict with eval_loss, eval_se, params, samples) and `eval_returns_model_<budget>.txt`
  (one episode return per line);
* a tidy CSV with columns game, flops, params, samples, seed, loss, return (seed optional;
  empty cells allowed).

Extra Atari seed files are combined the way the authors' plotting code does it: a running
mean over files, `value = (value * i + extra) / (i + 1)` with i counting the files read so far
(so a size missing from one file weighs the later ones differently from a plain mean). Each
file is kept as its own `seed`, and the weights that reproduce the authors' numbers are stored
as `return_weight`; `ilscaling.fit.seed_means` uses them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ilscaling.results_file import build_results, validate_results

CSV_COLUMNS = ("game", "flops", "params", "samples", "loss", "return")
ATARI_FOLDERS = ("eval_loss", "eval_return", "flop_params_to_samples")
NETHACK_LOSS = re.compile(r"eval_loss_overlap_(?P<overlap>\d+)_model_(?P<budget>[0-9.]+e\+?[0-9]+)\.tar$")
NETHACK_RETURNS = re.compile(r"eval_returns_model_(?P<budget>[0-9.]+e\+?[0-9]+)\.txt$")
ATARI_GAME = re.compile(r"^eval_(?:loss|return)_(?P<game>[A-Za-z0-9]+)\.tar$")


# ---------------------------------------------------------------------------------------------
# Layout detection
# ---------------------------------------------------------------------------------------------

def detect_layout(path: str | Path) -> str:
    """'csv', 'atari', 'nethack' or 'experiment_data' (a folder holding atari/ and/or nethack/)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"published results not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise ValueError(f"unknown published-results layout: {path} is a file but not a .csv table")
    if any((path / folder).is_dir() for folder in ATARI_FOLDERS):
        return "atari"
    if (path / "atari").is_dir() or (path / "nethack").is_dir():
        return "experiment_data"
    if any(NETHACK_LOSS.search(p.name) or NETHACK_RETURNS.search(p.name) for p in path.glob("*/*/*")):
        return "nethack"
    raise ValueError(f"unknown published-results layout in {path}: expected a .csv table, an Atari folder "
                     f"with {'/'.join(ATARI_FOLDERS)}, a NetHack folder <experiment>/<run_id>/"
                     f"eval_loss_overlap_<k>_model_<budget>.tar, or experiment_data with atari/ or nethack/")


def list_games(path: str | Path) -> list[str]:
    """Game names the published folder or table holds, without reading the results."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "csv":
        table = _read_csv(path)
        if "game" not in table.columns:
            raise ValueError(f"{path}: missing column 'game' (need {', '.join(CSV_COLUMNS)}, optional seed)")
        games = table["game"].dropna().astype(str)
        _check_game_names(games, path)
        return sorted(games.unique())
    if layout == "atari":
        return _atari_games(path)
    if layout == "nethack":
        return _nethack_games(path)
    games = []
    if (path / "atari").is_dir():
        games += _atari_games(path / "atari")
    if (path / "nethack").is_dir():
        games += _nethack_games(path / "nethack")
    return games


def read_published(path: str | Path) -> xr.Dataset:
    """The results Dataset of any supported layout; ValueError naming the problem otherwise."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "csv":
        dataset = read_tidy_csv(path)
    elif layout == "atari":
        dataset = read_atari(path)
    elif layout == "nethack":
        dataset = read_nethack(path)
    else:
        parts = [read_atari(path / "atari")] if (path / "atari").is_dir() else []
        parts += [read_nethack(path / "nethack")] if (path / "nethack").is_dir() else []
        dataset = xr.concat(parts, "game", data_vars="all", join="outer") if len(parts) > 1 else parts[0]
    validate_results(dataset, source=str(path))
    dataset.attrs.update(layout=layout, source_path=str(path))
    return dataset


# ---------------------------------------------------------------------------------------------
# Shared checks and assembly
# ---------------------------------------------------------------------------------------------

def _number(value, where: str) -> float:
    """A float from a tensor or number; NaN/inf are errors naming `where`."""
    number = float(value.item() if hasattr(value, "item") else value)
    if not math.isfinite(number):
        raise ValueError(f"{where}: value is {number} (NaN or infinite)")
    return number


def _budget(text, where: str) -> float:
    try:
        budget = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: budget {text!r} is not a number such as '1e13'") from None
    if not budget > 0 or not math.isfinite(budget):
        raise ValueError(f"{where}: budget {text!r} must be positive and finite")
    return budget


def _dataset_from_rows(rows: list[dict]) -> xr.Dataset:
    """Rows with DIMS and some VALUE_COLUMNS into the results Dataset (NaN where absent)."""
    dataset = build_results(rows, {"expert_return": {}})  # the authors released no expert returns
    dataset["kl"].attrs.update(note="not published: NaN")
    return dataset


# ---------------------------------------------------------------------------------------------
# Atari (authors' experiment_data/atari)
# ---------------------------------------------------------------------------------------------

def _atari_games(folder: Path) -> list[str]:
    names = {m["game"] for sub in ("eval_loss", "eval_return") for p in (folder / sub).glob("*.tar")
             if (m := ATARI_GAME.match(p.name))}
    return sorted(names)


def _load_table(path: Path) -> dict[float, dict[int, float]]:
    """A torch pickle {budget string: {num_params: value}} as floats, checked."""
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported with its name
        raise ValueError(f"{path}: cannot be read as a torch pickle ({type(error).__name__}: {error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict from budget to {{params: value}}, got {type(raw).__name__}")
    table = {}
    for budget_text, by_params in raw.items():
        budget = _budget(budget_text, str(path))
        if not isinstance(by_params, dict):
            raise ValueError(f"{path}: budget {budget_text!r} maps to {type(by_params).__name__}, expected a dict")
        table[budget] = {int(params): _number(value, f"{path}, budget {budget_text}, params {params}")
                         for params, value in by_params.items()}
    return table


def _authors_running_mean(tables: list[dict]) -> dict[tuple[float, int], list[float]]:
    """Per (budget, params) the weight of each table in the authors' running mean.

    Table 0 is the main file, the others the seed files in order; file i (1-based among the
    extra files) enters as value = (value * i + extra) / (i + 1). A cell the main file lacks
    starts from the first file that has it (the authors' code would stop there).
    """
    weights: dict[tuple[float, int], list[float]] = {}
    for index, table in enumerate(tables):
        for budget, by_params in table.items():
            for params in by_params:
                cell = weights.setdefault((budget, params), [0.0] * len(tables))
                if index == 0 or sum(cell) == 0:
                    cell[index] = 1.0
                else:
                    cell[:] = [w * index / (index + 1) for w in cell]
                    cell[index] = 1.0 / (index + 1)
    return weights


def read_atari(folder: str | Path) -> xr.Dataset:
    """The authors' Atari folder (eval_loss/, eval_return/, flop_params_to_samples/)."""
    folder = Path(folder)
    games = _atari_games(folder)
    if not games:
        raise ValueError(f"{folder}: no eval_loss_<Game>.tar or eval_return_<Game>.tar files (empty)")
    rows, sources = [], {}
    for game in games:
        loss_path = folder / "eval_loss" / f"eval_loss_{game}.tar"
        loss = _load_table(loss_path) if loss_path.exists() else {}
        main_return = folder / "eval_return" / f"eval_return_{game}.tar"
        seed_files = sorted(folder.glob(f"eval_return/eval_return_{game}_*.tar"),
                            key=lambda p: int(p.stem.rsplit("_", 1)[1]) if p.stem.rsplit("_", 1)[1].isdigit() else -1)
        return_files = ([main_return] if main_return.exists() else []) + seed_files
        returns = [_load_table(p) for p in return_files]
        samples_path = folder / "flop_params_to_samples" / f"flop_params_to_samples_{game}.tar"
        samples = _load_table(samples_path) if samples_path.exists() else {}
        weights = _authors_running_mean(returns)
        sources[game] = [p.name for p in return_files]
        cells = set(weights) | {(b, n) for b, t in loss.items() for n in t}
        for budget, params in sorted(cells):
            d = samples.get(budget, {}).get(params, np.nan)
            for seed in range(max(1, len(returns))):
                value = returns[seed].get(budget, {}).get(params, np.nan) if returns else np.nan
                row = {"game": game, "flops": budget, "params": params, "seed": seed, "samples": d,
                       "return": value, "return_weight": weights.get((budget, params), [np.nan] * len(returns))[seed]
                       if returns else np.nan,
                       "loss": loss.get(budget, {}).get(params, np.nan) if seed == 0 else np.nan}
                if seed == 0 or np.isfinite(value):
                    rows.append(row)
        # Sizes with samples but no evaluation still tell the FLOPs per sample of that size.
        for budget, by_params in samples.items():
            for params, d in by_params.items():
                if (budget, params) not in cells:
                    rows.append({"game": game, "flops": budget, "params": params, "seed": 0, "samples": d})
    dataset = _dataset_from_rows(rows)
    dataset["return_weight"] = dataset["return_weight"].where(dataset["return"].notnull())
    dataset["return_weight"].attrs.update(
        long_name="weight of each seed file in the authors' running mean (ilscaling.published)")
    dataset.attrs["seed_sources"] = "; ".join(f"{g}: " + ", ".join(f"seed {i} = {name}" for i, name in enumerate(s))
                                              for g, s in sources.items())
    return dataset


# ---------------------------------------------------------------------------------------------
# NetHack (authors' experiment_data/nethack)
# ---------------------------------------------------------------------------------------------

def _nethack_games(folder: Path) -> list[str]:
    experiments = sorted({p.parent.parent.name for p in folder.glob("*/*/*")
                          if NETHACK_LOSS.search(p.name) or NETHACK_RETURNS.search(p.name)})
    return [nethack_game_name(e) for e in experiments]


def nethack_game_name(experiment: str) -> str:
    """'NetHack' followed by the experiment's letters and digits (names are used in paths)."""
    return "NetHack" + "".join(ch for ch in experiment.title() if ch.isalnum())


def _read_nethack_run(run_dir: Path, game: str) -> list[dict]:
    """Rows (without seed) of one run folder: per budget loss (mean over overlap files) and returns."""
    import torch

    by_budget: dict[float, dict] = {}
    for path in sorted(run_dir.iterdir()):
        if match := NETHACK_LOSS.search(path.name):
            budget = _budget(match["budget"], str(path))
            try:
                record = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as error:  # noqa: BLE001 - reported with the file name
                raise ValueError(f"{path}: cannot be read as a torch pickle ({type(error).__name__})") from None
            missing = [k for k in ("eval_loss", "params", "samples") if not isinstance(record, dict) or k not in record]
            if missing:
                raise ValueError(f"{path}: lacks {missing} (expected a dict with eval_loss, eval_se, params, samples)")
            entry = by_budget.setdefault(budget, {"losses": [], "params": set(), "samples": set()})
            entry["losses"].append(_number(record["eval_loss"], str(path)))
            entry["params"].add(int(_number(record["params"], f"{path} params")))
            entry["samples"].add(_number(record["samples"], f"{path} samples"))
        elif match := NETHACK_RETURNS.search(path.name):
            budget = _budget(match["budget"], str(path))
            text = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            returns = np.array([_number(float(line), f"{path} line {i + 1}") for i, line in enumerate(text)])
            if len(returns) == 0:
                raise ValueError(f"{path}: no returns (empty file)")
            by_budget.setdefault(budget, {"losses": [], "params": set(), "samples": set()})["returns"] = returns
    rows = []
    for budget, entry in sorted(by_budget.items()):
        if len(entry["params"]) > 1:
            raise ValueError(f"{run_dir}: budget {budget:g} has files with different params {sorted(entry['params'])}")
        if not entry["params"]:
            raise ValueError(f"{run_dir}: budget {budget:g} has returns but no eval_loss_overlap file "
                             f"giving its params and samples")
        returns = entry.get("returns", np.array([]))
        rows.append({"game": game, "flops": budget, "params": entry["params"].pop(),
                     "samples": float(np.mean(sorted(entry["samples"]))),
                     "loss": float(np.mean(entry["losses"])) if entry["losses"] else np.nan,
                     "n_overlap_files": len(entry["losses"]),
                     "return": float(returns.mean()) if len(returns) else np.nan,
                     "return_sem": float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else np.nan})
    return rows


def read_nethack(folder: str | Path) -> xr.Dataset:
    """The authors' NetHack folder: <experiment>/<run_id>/ files; repeated (budget, params) are seeds.

    Several eval_loss_overlap_<k> files of one run and budget are averaged (their count is kept
    as `n_overlap_files`).
    """
    folder = Path(folder)
    rows = []
    for experiment in sorted(p for p in folder.iterdir() if p.is_dir()):
        game = nethack_game_name(experiment.name)
        seen: dict[tuple[float, int], int] = {}
        for run_dir in sorted(p for p in experiment.iterdir() if p.is_dir()):
            for row in _read_nethack_run(run_dir, game):
                key = (row["flops"], row["params"])
                row["seed"] = seen[key] = seen.get(key, -1) + 1
                rows.append(row)
    if not rows:
        raise ValueError(f"{folder}: no NetHack results (empty)")
    return _dataset_from_rows(rows)


# ---------------------------------------------------------------------------------------------
# Tidy CSV
# ---------------------------------------------------------------------------------------------

# A game name becomes a folder and a workflow wildcard (figures/<game>/): letters and digits only.
GAME_NAME = re.compile(r"^[A-Za-z0-9]+$")


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV table; an empty or unreadable file is an error naming it."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty (need a header with {', '.join(CSV_COLUMNS)}, then rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV table ({err})") from None


def _check_game_names(games: pd.Series, path: Path) -> None:
    bad = sorted({g for g in games if not GAME_NAME.match(g)})
    if bad:
        raise ValueError(f"{path}: game names {bad} have characters other than letters and digits (they name "
                         "folders and the workflow's {game} wildcard): rename them, e.g. SpaceInvaders")


def read_tidy_csv(path: str | Path) -> xr.Dataset:
    """A table with columns game, flops, params, samples, (seed,) loss, return; one row per run."""
    path = Path(path)
    table = _read_csv(path)
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (need {', '.join(CSV_COLUMNS)}, optional seed)")
    if table.empty:
        raise ValueError(f"{path}: no rows (empty table)")
    if "seed" not in table:
        table["seed"] = 0
    for column in ("game", "flops", "params", "seed"):
        bad = table[column].isna()
        if bad.any():
            raise ValueError(f"{path}: column {column!r} is NaN/empty in row {int(np.flatnonzero(bad)[0]) + 2} "
                             f"(game, flops, params and seed identify a run and cannot be missing)")
    for column in ("flops", "params", "samples", "loss", "return"):
        values = pd.to_numeric(table[column], errors="coerce")
        if (values.isna() & table[column].notna()).any():
            row = int(np.flatnonzero(values.isna() & table[column].notna())[0]) + 2
            raise ValueError(f"{path}: column {column!r} row {row} is not a number: {table[column].iloc[row - 2]!r}")
        if np.isinf(values).any():
            raise ValueError(f"{path}: column {column!r} has infinite values")
        table[column] = values
    # Compute, sizes and data are positive counts; a size is a whole number of parameters.
    for column in ("flops", "params", "samples"):
        bad = table[column].notna() & (table[column] <= 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: column {column!r} row {row + 2} ({table['game'].iloc[row]}) is "
                             f"{table[column].iloc[row]:g}: it must be positive")
    fractional = table["params"] != np.round(table["params"])
    if fractional.any():
        row = int(np.flatnonzero(fractional)[0])
        raise ValueError(f"{path}: column 'params' row {row + 2} is {table['params'].iloc[row]:g}: "
                         "a parameter count is a whole number")
    table["game"] = table["game"].astype(str)
    _check_game_names(table["game"], path)
    table["params"] = table["params"].astype(np.int64)
    table["seed"] = table["seed"].astype(np.int64)
    rows = table[["game", "flops", "params", "seed", "samples", "loss", "return"]].to_dict("records")
    return _dataset_from_rows(rows)
