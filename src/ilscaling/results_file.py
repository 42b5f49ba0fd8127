"""The results file: held-out loss and return of every run, dims (game, flops, params, seed).

One home for its schema: `build_results` makes it from one row per run (our evaluations in
`evaluate.gather_results`, the authors' tables in `published`), `validate_results` rejects what no
fit can use (the fits call it too), `write_results` writes results.nc and its tidy CSV twin.

Variables per run: `loss` (held-out cross entropy), `kl` (held-out KL(π_expert ‖ π_BC), NaN without
an expert distribution), `return`, `return_sem`, `samples`, `epochs`, and whatever else the rows
carry; per game, the `expert_*` values the caller gives. NaN where a combination was not run.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import xarray as xr

from ilscaling.flops import budget_label

DIMS = ("game", "flops", "params", "seed")
VALUE_COLUMNS = ("loss", "kl", "return", "return_sem", "samples", "epochs")  # NaN where rows lack them
REQUIRED_VARIABLES = ("loss", "return", "samples")  # what the fits read
LOSS_METRIC_TEXT = {"cross_entropy": "cross entropy", "kl": "KL(expert ‖ BC)"}
ATTRIBUTES = {
    "loss": {"long_name": "held-out cross entropy", "units": "nats"},
    "kl": {"long_name": "held-out KL(expert policy || BC policy)", "units": "nats"},
    "return": {"long_name": "mean episode return of the sampled policy"},
    "flops": {"long_name": "training compute budget", "units": "FLOPs"},
    "params": {"long_name": "model parameters"},
}


def build_results(rows: list[dict], expert: dict[str, dict[str, float]] | None = None) -> xr.Dataset:
    """The results Dataset from one row per run (DIMS and some of VALUE_COLUMNS, any further columns).

    `expert` maps a per-game variable (e.g. expert_return) to {game: value}; a game without a value is NaN.
    """
    if not rows:
        raise ValueError("no results: no rows to build the results file from")
    table = pd.DataFrame(rows)
    for column in VALUE_COLUMNS:
        if column not in table:
            table[column] = np.nan
    duplicated = table.duplicated(list(DIMS))
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise ValueError(f"game {first['game']!r}: duplicate result for flops={first['flops']:g}, "
                         f"params={first['params']:g}, seed={first['seed']}")
    values = [c for c in table.columns if c not in DIMS]
    dataset = table.set_index(list(DIMS))[values].to_xarray()
    dataset = dataset.assign_coords(params=dataset["params"].values.astype(np.int64))
    games = dataset["game"].values
    for name, per_game in (expert or {}).items():
        dataset[name] = ("game", [per_game.get(g, np.nan) for g in games])
    for name, attrs in ATTRIBUTES.items():
        dataset[name].attrs.update(attrs)
    return dataset


def validate_results(results: xr.Dataset, loss_metrics: dict[str, str] | None = None, source: str = "") -> None:
    """Raise ValueError naming the problem (and game) for results that cannot be fitted.

    `loss_metrics` (game -> metric) names what `loss` holds per game (default: cross entropy);
    `source`, if given, starts every message (the file or folder read).
    """
    where = f"{source}: " if source else ""
    missing = [v for v in REQUIRED_VARIABLES if v not in results.data_vars]
    missing_dims = [d for d in DIMS if d not in results.dims]
    if missing or missing_dims:
        raise ValueError(f"{where}results dataset lacks variables {missing} / dims {missing_dims}")
    if any(results.sizes[d] == 0 for d in DIMS) or not (
            np.isfinite(results["loss"].values).any() or np.isfinite(results["return"].values).any()):
        raise ValueError(f"{where}results dataset is empty (sizes {dict(results.sizes)}, no finite loss or return)")
    for game in map(str, results["game"].values):
        loss = results["loss"].sel(game=game)
        returns = results["return"].sel(game=game)
        if not np.isfinite(loss.values).any() and not np.isfinite(returns.values).any():
            raise ValueError(f"{where}game {game!r}: every loss and return value is NaN (no finished runs)")
        bad = loss.where(loss <= 0)
        if np.isfinite(bad.values).any():
            first = bad.stack(point=bad.dims).dropna("point")["point"].values[0]
            at = ", ".join(f"{dim}={budget_label(value) if dim == 'flops' else value}"
                           for dim, value in zip(bad.dims, first))
            metric = LOSS_METRIC_TEXT[(loss_metrics or {}).get(game, "cross_entropy")]
            raise ValueError(f"{where}game {game!r}: non-positive loss values ({metric}; first at {at}); "
                             f"a loss must be > 0 to fit in log space")
        if not np.isfinite(loss.values).any():
            # Published sets can hold returns only (e.g. DoubleDunk); its loss laws are reported as not fitted.
            loss = returns
        has_data = np.isfinite(loss).any([d for d in loss.dims if d != "flops"])
        budgets_with_data = loss["flops"].values[has_data.values]
        if len(budgets_with_data) < 2:
            raise ValueError(f"{where}game {game!r}: results of a single compute budget "
                             f"({', '.join(map(budget_label, budgets_with_data))}); "
                             f"scaling laws need at least 2 budgets")


def write_results(dataset: xr.Dataset, out_nc: str | os.PathLike, out_csv: str | os.PathLike | None = None) -> None:
    """results.nc and (if `out_csv`) its tidy CSV twin, one row per run, both written atomically."""
    from ilscaling.io import atomic_path  # io imports torch; reading results should not

    with atomic_path(out_nc, suffix=".nc") as tmp:
        dataset.to_netcdf(tmp)
    if out_csv is not None:
        per_run = [name for name in dataset.data_vars if dataset[name].dims == DIMS]
        table = dataset[per_run].to_dataframe().dropna(how="all", subset=["loss", "return"])
        with atomic_path(out_csv, suffix=".csv") as tmp:
            table.reset_index().to_csv(tmp, index=False)
