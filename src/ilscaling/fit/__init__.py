"""Scaling-law fits of a BC sweep: isoFLOP profiles per compute budget, then laws across budgets.

The pipeline follows Tuyls et al. (2023), section 3 (itself after Hoffmann et al. 2022): seeds are
averaged; each budget's isoFLOP profile gives N_opt, D_opt, L_min and R_max (raw best size, or the
vertex of a parabola in log10 N); power laws y = a * C**b run through those optima across budgets,
with one-step-ahead cross-validation and a holdout refit; beside them the saturating loss law
E + A C^b, return vs loss, and the parametric surface L(N, D) = E + A/N^alpha + B/D^beta. Every
quantity carries its interval; fits.nc holds enough (coefficients, covariances) for figures to
draw fits and bands without refitting.

The loss fitted is `FitConfig.loss_metric`: the held-out cross entropy on the recorded actions (as
the paper) or the held-out KL(π_expert ‖ π_BC); a game with no finite value of the chosen metric
(NetHack and published sets have no expert distribution) is fitted on cross entropy, and fits.nc
says per game which metric was fitted (`loss_metric`).

Modules:
  config      FitConfig and the names of fits.nc's coordinates
  stats       OLS line and parabola, the saturating return law, Huber loss and batched IRLS
  profiles    seed means, per-budget isoFLOP optima (vertex and raw methods)
  laws        lines across budgets with cross-validation and holdout; the return shift
  floor       the saturating loss law L_min(C) = E + A C^b, with its residual bootstrap
  parametric  the surface L(N, D), its bootstrap and compute-optimal allocation
  result      GameFit, one game's fits, and fit_game that makes it
  store       fits.nc: packing every GameFit (fit_results) and reading fits back
  report      the markdown summary
"""

from __future__ import annotations

import os

import xarray as xr

from ilscaling.fit.config import (BOUNDS, FIT_SETS, FLOOR_INFO, FLOOR_METHODS, LAW_QUANTITIES, LAW_STATS,
                                  LINEAR_IN_LOG10_X, LOSS_METRICS, METHODS, METRICS, NOT_FITTED,
                                  POWER_LAW, TARGETS, FitConfig)
from ilscaling.fit.laws import better_loss_form
from ilscaling.fit.profiles import seed_means
from ilscaling.fit.report import LAW_LABELS, floor_comparison, format_interval, summary_markdown
from ilscaling.fit.store import (fit_results, fitted_loss_metric, fitted_results, law_fit, loss_axis_label,
                                 saturating_fit, stored_quadratic)
from ilscaling.results_file import LOSS_METRIC_TEXT

__all__ = [
    "BOUNDS", "FIT_SETS", "FLOOR_INFO", "FLOOR_METHODS", "LAW_LABELS", "LAW_QUANTITIES", "LAW_STATS",
    "LINEAR_IN_LOG10_X", "LOSS_METRICS", "LOSS_METRIC_TEXT", "METHODS", "METRICS", "NOT_FITTED", "POWER_LAW",
    "TARGETS", "FitConfig", "better_loss_form", "fit_results", "fitted_loss_metric", "fitted_results",
    "floor_comparison", "format_interval", "law_fit", "loss_axis_label", "saturating_fit", "seed_means",
    "stored_quadratic", "summary_markdown", "write_fits",
]


def write_fits(results_nc: str | os.PathLike, fits_nc: str | os.PathLike, summary_md: str | os.PathLike,
               config: FitConfig = FitConfig()) -> xr.Dataset:
    """Fit the results file; write the fits NetCDF and the markdown summary atomically."""
    from ilscaling.io import atomic_path, open_netcdf

    with open_netcdf(results_nc, "results") as results:
        fits = fit_results(results.load(), config)
    with atomic_path(fits_nc, suffix=".nc") as tmp:
        fits.to_netcdf(tmp)
    with atomic_path(summary_md, suffix=".md") as tmp:
        tmp.write_text(summary_markdown(fits))
    return fits
