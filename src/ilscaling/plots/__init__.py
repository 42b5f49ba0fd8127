"""Figures of one game, drawn from the results and fits files alone (nothing is refitted).

Every figure is written as PNG and PDF under the stems of FIGURE_STEMS, and OVERVIEW_STEM, the
page of a game's headline laws drawn by the same per-panel code. Parabolas come from
the stored quadratic coefficients and power-law lines and bands from the stored fit
statistics (`ilscaling.fit.law_fit`), so a figure always shows exactly what was fitted. The
loss shown is the one fitted for the game (fits.nc `loss_metric`: cross entropy or KL), and every
axis of a loss says which.
"""

from __future__ import annotations

import os
from pathlib import Path

import seaborn as sns
import xarray as xr

from ilscaling.fit import LOSS_METRIC_TEXT, fitted_loss_metric, fitted_results
from ilscaling.plots.forecast import FORECAST_STEM, plot_forecast
from ilscaling.plots.laws import plot_allocation, plot_compute_law, plot_isoflop, plot_return_vs_loss
from ilscaling.plots.overview import loss_frontier_label, overview_figure
from ilscaling.plots.style import save

FIGURE_STEMS = ("isoflop_loss", "isoflop_return", "optimal_params", "optimal_samples", "loss_frontier",
                "return_frontier", "return_vs_loss", "allocation")
OVERVIEW_STEM = "laws_at_a_glance"  # the page of the headline laws (plot_game writes it beside FIGURE_STEMS)

__all__ = ["FIGURE_STEMS", "FORECAST_STEM", "OVERVIEW_STEM", "overview_figure", "plot_all", "plot_forecast", "plot_game"]


def plot_game(results: xr.Dataset, fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """OVERVIEW_STEM and all FIGURE_STEMS of one game as PNG and PDF in out_dir; returns the written paths."""
    if game not in set(map(str, fits["game"].values)) or game not in set(map(str, results["game"].values)):
        raise ValueError(f"game {game!r} is not in both the results and the fits file")
    out_dir = Path(out_dir)
    expert = float(results["expert_return"].sel(game=game)) if "expert_return" in results else float("nan")
    results = fitted_results(results, fits)  # `loss` is the metric the fits used
    metric = f" ({LOSS_METRIC_TEXT[fitted_loss_metric(fits, game)]})"
    paths = []
    with sns.axes_style("ticks"), sns.plotting_context("paper", font_scale=1.1):
        paths += save(overview_figure(results, fits, game), out_dir, OVERVIEW_STEM)
        paths += plot_isoflop(results, fits, game, "loss", out_dir)
        paths += plot_isoflop(results, fits, game, "return", out_dir)
        paths += plot_compute_law(fits, game, "n_opt", "loss", "optimal_params",
                                   "loss-optimal parameters $N_{opt}$" + metric, out_dir)
        paths += plot_compute_law(fits, game, "d_opt", "loss", "optimal_samples",
                                   "training samples at $N_{opt}$ ($D_{opt}$)" + metric, out_dir)
        paths += plot_compute_law(fits, game, "l_min", "loss", "loss_frontier", loss_frontier_label(fits, game),
                                   out_dir)
        paths += plot_compute_law(fits, game, "r_max", "return", "return_frontier", "maximum return $R_{max}$",
                                   out_dir, expert_return=expert)
        paths += plot_return_vs_loss(results, fits, game, out_dir)
        paths += plot_allocation(fits, game, out_dir)
    return paths


def plot_all(results_nc: str | os.PathLike, fits_nc: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Figures of every game of the fits file (plot_game), in out_dir/<game>/<stem>.png|.pdf."""
    from ilscaling.io import open_netcdf

    with open_netcdf(results_nc, "results") as results, open_netcdf(fits_nc, "fits") as fits:
        results, fits = results.load(), fits.load()
    paths = []
    for game in map(str, fits["game"].values):
        paths += plot_game(results, fits, game, Path(out_dir) / game)
    return paths
