"""The forecast figure: the predicted compute-optimal agent at C* against the one trained there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import seaborn as sns
import xarray as xr

from ilscaling.fit import LOSS_METRIC_TEXT, FitConfig, fitted_loss_metric, law_fit
from ilscaling.flops import budget_label
from ilscaling.plots.style import (LINE_COLOUR, PARAMETRIC_COLOUR, RAW_COLOUR, new_figure, plain_log_ticks, save)

FORECAST_STEM = "forecast"
MEASURED_COLOUR = "#c51b7d"
# colour, marker, x offset from C* (side by side, clear of the measured point at C*)
FORECAST_STYLE = {"raw": (RAW_COLOUR, "X", 0.78), "vertex": ("black", "D", 0.88), "parametric": (PARAMETRIC_COLOUR, "s", 1.14)}


def _forecast_panel(ax, fits: xr.Dataset, verdict: dict, quantity: str, metric: str) -> None:
    """Per-budget optima, the vertex law with its prediction band out to C*, the forecasts and the measurement."""
    game = verdict["game"]
    game_fits = fits.sel(game=game)
    confidence = FitConfig.from_attrs(fits.attrs).confidence
    budgets = game_fits["flops"].values.astype(float)
    values = game_fits[quantity].values
    lo, hi = game_fits[f"{quantity}_lo"].values, game_fits[f"{quantity}_hi"].values
    used = game_fits["used_in_fit"].sel(metric=metric).values.astype(bool)
    shown = np.isfinite(values)
    for c, v, l, h, u in zip(budgets[shown], values[shown], lo[shown], hi[shown], used[shown]):
        colour = LINE_COLOUR if u else "grey"
        ax.errorbar([c], [v], yerr=[[v - l], [h - v]] if np.isfinite(l) and np.isfinite(h) else None, fmt="o", ms=5,
                    color=colour, capsize=2, lw=1, zorder=3)
    ax.scatter([], [], marker="o", color=LINE_COLOUR, label="sweep: optimum per budget (vertex)")
    budget = float(verdict["budget"])
    low = budgets[shown].min() if shown.any() else budget / 10
    x_grid = np.geomspace(low / 1.5, budget * 1.6, 200)
    shift = float(game_fits["return_shift"]) if quantity == "r_max" else 0.0
    fit = law_fit(fits, game, quantity)
    if fit is not None:
        ax.plot(x_grid, fit.predict(x_grid) - shift, color=LINE_COLOUR, lw=1.4, zorder=2, label="isoFLOP power law")
        band_lo, band_hi = fit.prediction_band(x_grid, confidence)
        if np.isfinite(band_lo).all():
            ax.fill_between(x_grid, band_lo - shift, band_hi - shift, color=LINE_COLOUR, alpha=0.13, lw=0, zorder=1,
                            label=f"{100 * confidence:g}% prediction band")
    verdict_quantity = "loss" if quantity == "l_min" else "return"
    for check in verdict["checks"]:
        if check["quantity"] != verdict_quantity:
            continue
        colour, marker, offset = FORECAST_STYLE[check["method"]]
        value, c_lo, c_hi = check["predicted"], check["lo"], check["hi"]
        yerr = [[value - c_lo], [c_hi - value]] if c_lo is not None and c_hi is not None else None
        ax.errorbar([budget * offset], [value], yerr=yerr, fmt=marker, ms=7, color=colour, mfc="white", capsize=3,
                    lw=1.2, zorder=5, label=f"forecast, {check['method']}: {value:.4g}"
                    + (f" [{c_lo:.4g}, {c_hi:.4g}]" if yerr else ""))
    measured = verdict["measured"]
    sem = measured.get("return_sem") if verdict_quantity == "return" else None
    ax.errorbar([measured["flops"]], [measured[verdict_quantity]],
                yerr=[[sem], [sem]] if sem is not None and np.isfinite(sem) else None, fmt="*", ms=14,
                color=MEASURED_COLOUR, mec="black", mew=0.6, capsize=3, zorder=6,
                label=f"measured, w{verdict['width']}: {measured[verdict_quantity]:.4g}")
    ax.axvline(budget, color="grey", lw=0.8, ls=":", zorder=0)
    ax.set_xscale("log")
    all_y = [measured[verdict_quantity]] + [v for v in values[shown]]
    if quantity == "l_min" and min(all_y) > 0:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("compute budget C (FLOPs)")
    metric = LOSS_METRIC_TEXT[fitted_loss_metric(fits, game)]
    ax.set_ylabel(f"minimum held-out loss $L_{{min}}$ ({metric})" if quantity == "l_min" else "maximum return $R_{max}$")
    ax.legend(fontsize="x-small", frameon=False, loc="best")


def plot_forecast(fits: xr.Dataset, verdict: dict, out_dir: Path) -> list[Path]:
    """`forecast`.png/.pdf of one game: L_min and R_max vs C with the forecast at C* and the measured agent."""
    game = verdict["game"]
    if game not in set(map(str, fits["game"].values)):
        raise ValueError(f"game {game!r} is not in the fits file")
    with sns.axes_style("ticks"), sns.plotting_context("paper", font_scale=1.0):
        fig = new_figure(10.0, 4.6)
        axes = fig.subplots(1, 2)
        _forecast_panel(axes[0], fits, verdict, "l_min", "loss")
        _forecast_panel(axes[1], fits, verdict, "r_max", "return")
        level = f"{100 * verdict['confidence']:g}%"
        fig.suptitle(f"{game}: forecast at C* = {budget_label(verdict['budget'])} FLOPs vs the agent trained there "
                     f"(width {verdict['width']}, {verdict['params']:,} parameters; {level} intervals)")
        return save(fig, Path(out_dir), FORECAST_STEM)
