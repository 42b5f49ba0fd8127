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
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ilscaling.flops import budget_label
from ilscaling.io import atomic_path
from ilscaling.fit import (LINEAR_IN_LOG10_X, LOSS_METRIC_TEXT, FitConfig, format_interval,
                               fitted_loss_metric, fitted_results, law_fit, loss_axis_label, saturating_fit, seed_means)

FIGURE_STEMS = ("isoflop_loss", "isoflop_return", "optimal_params", "optimal_samples", "loss_frontier",
                "return_frontier", "return_vs_loss", "allocation")
OVERVIEW_STEM = "laws_at_a_glance"  # the page of the headline laws (plot_game writes it beside FIGURE_STEMS)
RAW_COLOUR = "#b35806"
PARAMETRIC_COLOUR = "#1b7837"
HOLDOUT_COLOUR = "#6a3d9a"
FORMATS = ("png", "pdf")
BUDGET_PALETTE = "flare"  # sequential: darker = more compute
LINE_COLOUR = "#1f4e79"
EDGE_TEXT = "edge: optimum at the end of the model grid; {}"
LAW_SYMBOLS = {"n_opt": "N_{opt}", "d_opt": "D_{opt}", "l_min": "L_{min}", "r_max": "R_{max}"}


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _latex_number(value: float) -> str:
    """3 significant digits, as mathtext, e.g. 1.23\\times10^{-5}."""
    mantissa, exponent = f"{value:.2e}".split("e")
    exponent = int(exponent)
    return mantissa if -2 <= exponent <= 3 and abs(value) >= 1e-2 else rf"{mantissa}\times10^{{{exponent}}}"


def _edge_text(fits: xr.Dataset) -> str:
    excluded = FitConfig.from_attrs(fits.attrs).exclude_edge_budgets
    return EDGE_TEXT.format("excluded from fit" if excluded else "kept in fit")


def _new_figure(width: float = 5.0, height: float = 4.0) -> Figure:
    # A bare Figure (no pyplot) is never registered globally, so nothing leaks between figures.
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically (temporary name, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            # Fixed metadata keeps repeated builds byte-identical where the backend allows.
            metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=200, metadata=metadata)
        paths.append(path)
    return paths


class BudgetColours:
    """A sequential colour per budget on a log scale, plus its colorbar."""

    def __init__(self, budgets):
        self.budgets = np.sort(np.asarray(budgets, float))
        self.cmap = sns.color_palette(BUDGET_PALETTE, as_cmap=True)
        low, high = self.budgets.min(), self.budgets.max()
        self.norm = LogNorm(low / 1.5, high * 1.5) if low == high else LogNorm(low, high)

    def __call__(self, budget: float):
        return self.cmap(self.norm(budget))

    def colorbar(self, fig: Figure, ax) -> None:
        mappable = ScalarMappable(norm=self.norm, cmap=self.cmap)
        bar = fig.colorbar(mappable, ax=ax, pad=0.02)
        bar.set_label("compute budget C (FLOPs)")
        step = max(1, int(np.ceil(len(self.budgets) / 10)))  # at most ~10 labels
        shown = self.budgets[::step]
        bar.ax.minorticks_off()
        bar.set_ticks(shown, labels=[budget_label(b) for b in shown])


def _empty_panel(ax, message: str) -> None:
    """An axes that says why it has nothing to show."""
    ax.text(0.5, 0.5, textwrap.fill(message, 40), ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _empty_figure(out_dir: Path, stem: str, message: str) -> list[Path]:
    """A figure that says why it has nothing to show (the file set stays complete)."""
    fig = _new_figure()
    _empty_panel(fig.add_subplot(), message)
    return _save(fig, out_dir, stem)


def loss_metric_name(fits: xr.Dataset, game: str) -> str:
    """The held-out loss the fits were made on, in words (fits' `loss_metric` of the game)."""
    return LOSS_METRIC_TEXT[fitted_loss_metric(fits, game)]


def _sel(data, **where):
    """.sel with a dict (the dimension `method` collides with .sel's own keyword)."""
    return data.sel(where)


def _plain_log_ticks(axis) -> None:
    """Plain-number ticks (3, 4, 5 rather than 3x10^0) on a log axis spanning few decades.

    Losses typically span less than a decade, where the default log ticks are unreadable.
    """
    low, high = axis.get_view_interval()
    decades = np.log10(high) - np.log10(low)  # high / low can overflow
    if decades > 3:
        return
    subs = np.arange(1.0, 10.0) if decades < 1 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _decade_ticks(axis) -> None:
    """Label a log axis at its decades only, when it shows one: over 1-2 decades matplotlib also
    labels the 2x, 3x, ... minor ticks, and their labels run into each other."""
    low, high = axis.get_view_interval()
    if np.floor(np.log10(high)) >= np.ceil(np.log10(low)):
        axis.set_minor_formatter(NullFormatter())


def _scalar(data: xr.Dataset, name: str, **where) -> float:
    return float(data[name].sel(**where).item())


# ---------------------------------------------------------------------------------------------
# isoFLOP profiles
# ---------------------------------------------------------------------------------------------

def _draw_isoflop(ax, results: xr.Dataset, fits: xr.Dataset, game: str, metric: str) -> list[Line2D] | None:
    """On `ax`, one curve per budget: points, dashed parabola, optimum; edge budgets hollow; a
    colour bar of the budgets. Returns the legend's handles, or None when there is no value."""
    means = seed_means(results.sel(game=game))
    response = means[metric]
    budgets = [c for c in means["flops"].values if np.isfinite(response.sel(flops=c).values).any()]
    if not budgets:
        return None
    colours = BudgetColours(budgets)
    loss_metric = metric == "loss"
    optimum_x = "n_opt" if loss_metric else "n_opt_return"
    optimum_y = "l_min" if loss_metric else "r_max"
    any_edge = any_skipped = False
    for budget in budgets:
        colour = colours(budget)
        row = response.sel(flops=budget)
        finite = np.isfinite(row.values)
        params, values = row["params"].values[finite].astype(float), row.values[finite]
        where = {"game": game, "flops": budget, "metric": metric}
        edge = bool(fits["edge"].sel(**where))
        skipped = bool(fits["skipped"].sel(**where))
        any_edge |= edge
        any_skipped |= skipped
        ax.scatter(params, values, s=28, zorder=3, edgecolors=colour, linewidths=1.2,
                   facecolors="none" if edge or skipped else colour)
        if skipped:
            continue
        coef = fits["quad_coef"].sel(**where).values
        log_n = np.linspace(_scalar(fits, "quad_log10n_min", **where), _scalar(fits, "quad_log10n_max", **where), 100)
        curve = np.polyval(coef, log_n)
        ax.plot(10**log_n, 10**curve if loss_metric else curve, ls="--", lw=1.2, color=colour, zorder=2)
        best_x = _scalar(fits, optimum_x, game=game, flops=budget)
        best_y = _scalar(fits, optimum_y, game=game, flops=budget)
        ax.scatter([best_x], [best_y], marker="*", s=150, zorder=4, edgecolors="black", linewidths=0.8,
                   facecolors="none" if edge else colour)
    ax.set_xscale("log")
    if loss_metric:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(loss_axis_label(fitted_loss_metric(fits, game)) if loss_metric else "mean episode return")
    colours.colorbar(ax.get_figure(), ax)

    handles = [Line2D([], [], ls="--", color="grey", label="quadratic fit in log10 N"),
               Line2D([], [], ls="", marker="*", ms=11, mfc="grey", mec="black",
                      label="optimum (vertex of the fit)")]
    if any_edge:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey", label=_edge_text(fits)))
    if any_skipped:
        min_sizes = FitConfig.from_attrs(fits.attrs).min_sizes_per_budget
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey",
                              label=f"skipped: fewer than {min_sizes} sizes"))
    return handles


def _plot_isoflop(results: xr.Dataset, fits: xr.Dataset, game: str, metric: str, out_dir: Path) -> list[Path]:
    """isoflop_`metric`: the isoFLOP profiles of one game."""
    fig = _new_figure(5.6, 4.6)
    ax = fig.add_subplot()
    handles = _draw_isoflop(ax, results, fits, game, metric)
    if handles is None:
        return _empty_figure(out_dir, f"isoflop_{metric}", f"{game}: no {metric} values in the results")
    what = f"held-out loss ({loss_metric_name(fits, game)})" if metric == "loss" else "return"
    ax.set_title(f"{game}: isoFLOP profiles of {what}")
    fig.legend(handles=handles, loc="outside lower center", ncols=1, frameon=False, fontsize="small")
    return _save(fig, out_dir, f"isoflop_{metric}")


# ---------------------------------------------------------------------------------------------
# Power laws in compute
# ---------------------------------------------------------------------------------------------

def _law_label(fits: xr.Dataset, game: str, quantity: str, symbol: str, x_symbol: str = "C") -> str:
    """The fitted formula with its exponent ± half-width of the interval."""
    fit = law_fit(fits, game, quantity)
    if fit is None:
        return "not fitted"
    row = fits["law"].sel(game=game, quantity=quantity)
    half = (float(row.sel(stat="slope_hi")) - float(row.sel(stat="slope_lo"))) / 2
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}%"
    spread = rf" \pm {half:.3f}" if np.isfinite(half) else ""
    if fit.form == LINEAR_IN_LOG10_X:
        formula = rf"${symbol} = {_latex_number(fit.intercept)} + ({fit.slope:.3g}{spread})\,\log_{{10}} {x_symbol}$"
    else:
        formula = rf"${symbol} = {_latex_number(fit.prefactor)}\,{x_symbol}^{{{fit.slope:.3f}{spread}}}$"
    return formula + (f" ({level} CI)" if spread else " (no interval: 2 points)")


def _draw_floor_laws(ax, fits: xr.Dataset, game: str, x_grid: np.ndarray) -> None:
    """The saturating laws L_min = E + A C^b of the vertex and raw optima, labelled with b and E."""
    for method, colour, width in (("vertex", LINE_COLOUR, 1.3), ("raw", RAW_COLOUR, 1.0)):
        law = fits["floor_law"].sel(game=game, floor_method=method)
        (floor, floor_lo, floor_hi), (prefactor, _, _), (exponent, lo, hi) = (
            [float(law.sel(floor_param=k, bound=b)) for b in ("value", "lo", "hi")] for k in ("E", "A", "b"))
        if not np.isfinite(exponent):
            continue
        interval = f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else ""
        floor_interval = f" [{floor_lo:.3g}, {floor_hi:.3g}]" if np.isfinite(floor_lo) else ""
        ax.plot(x_grid, floor + prefactor * x_grid**exponent, ls="-.", lw=width, color=colour, zorder=2,
                label=f"{method}: $E + A\\,C^{{b}}$, b = {exponent:.3f}{interval}, E = {floor:.3g}{floor_interval}")


def _draw_method_extras(ax, fits, game, quantity, metric, x_grid, shift) -> None:
    """Raw optima and their law, the parametric allocation, the holdout refit and the forecast at C*."""
    game_fits = fits.sel(game=game)
    budgets = game_fits["flops"].values.astype(float)
    raw = game_fits[f"raw_{quantity}"].values
    finite = np.isfinite(raw)
    if finite.any():
        ax.scatter(budgets[finite], raw[finite], marker="x", s=30, color=RAW_COLOUR, zorder=5,
                   label="raw best size per budget")
    raw_fit = law_fit(fits, game, quantity, method="raw")
    if raw_fit is not None:
        ax.plot(x_grid, raw_fit.predict(x_grid) - shift, ls=":", lw=1.5, color=RAW_COLOUR, zorder=2,
                label=f"raw-optimum law, exponent {raw_fit.slope:.3f}")
    if quantity == "l_min" and "floor_law" in fits:
        _draw_floor_laws(ax, fits, game, x_grid)
    if quantity in ("n_opt", "d_opt", "l_min") and np.isfinite(game_fits["parametric_opt"].sel(ptarget=quantity,
                                                                                                 bound="value")).any():
        opt = game_fits["parametric_opt"].sel(ptarget=quantity)
        keep = np.isfinite(opt.sel(bound="value").values)
        ax.plot(budgets[keep], opt.sel(bound="value").values[keep], color=PARAMETRIC_COLOUR, lw=1.3, zorder=2,
                label="parametric L(N, D) optimum")
        if np.isfinite(opt.sel(bound="lo").values[keep]).all():
            ax.fill_between(budgets[keep], opt.sel(bound="lo").values[keep], opt.sel(bound="hi").values[keep],
                            color=PARAMETRIC_COLOUR, alpha=0.15, lw=0, zorder=1)
    held = _sel(game_fits["held_out"], method="vertex", metric=metric).values.astype(bool)
    holdout = law_fit(fits, game, quantity, method="vertex", fit_set="holdout")
    values = game_fits[quantity].values
    if held.any() and holdout is not None:
        confidence = FitConfig.from_attrs(fits.attrs).confidence
        lo, hi = holdout.prediction_band(budgets[held], confidence)
        centre = holdout.predict(budgets[held]) - shift
        ax.plot(x_grid, holdout.predict(x_grid) - shift, ls="--", lw=1.1, color=HOLDOUT_COLOUR, zorder=2,
                label="refit without held-out budget(s)")
        ax.errorbar(budgets[held], centre, yerr=[centre - (lo - shift), (hi - shift) - centre], fmt="none",
                    ecolor=HOLDOUT_COLOUR, capsize=3, lw=1, zorder=3)
        ax.scatter(budgets[held], values[held], marker="s", s=70, facecolors="none", edgecolors=HOLDOUT_COLOUR,
                   zorder=6, label=f"held out (in {100 * confidence:g}% PI: "
                                   f"{int(np.sum((lo - shift <= values[held]) & (values[held] <= hi - shift)))}/{held.sum()})")
    target = {"n_opt": "n_opt", "d_opt": "d_opt", "l_min": "l_min", "r_max": "r_max"}[quantity]
    forecast = _sel(game_fits["forecast"], method="vertex", target=target)
    value, lo, hi = (float(forecast.sel(bound=b)) for b in ("value", "lo", "hi"))
    budget = float(game_fits["forecast_budget"])
    if np.isfinite(value):
        ax.errorbar([budget], [value], yerr=[[value - lo], [hi - value]] if np.isfinite(lo) else None,
                    fmt="D", ms=7, color="black", mfc="white", capsize=3, zorder=6,
                    label=f"forecast at C*={budget_label(budget)} (PI)")


def _draw_law(ax, fits: xr.Dataset, game: str, quantity: str, x_grid: np.ndarray, label: str,
              x_transform=lambda x: x, shift: float = 0.0) -> None:
    """Fitted line and confidence band at x_grid (x_transform maps plot x to the law's x; shift is
    what was added to y before fitting)."""
    fit = law_fit(fits, game, quantity)
    if fit is None:
        note = str(fits["law_note"].sel(game=game, quantity=quantity).item())
        ax.plot([], [], ls="", label=textwrap.fill(note, 70))  # legend-only entry: says why no line
        return
    law_x = x_transform(x_grid)
    confidence = FitConfig.from_attrs(fits.attrs).confidence
    ax.plot(x_grid, fit.predict(law_x) - shift, color=LINE_COLOUR, lw=1.5, label=label, zorder=2)
    lo, hi = fit.confidence_band(law_x, confidence)
    if np.isfinite(lo).all():
        ax.fill_between(x_grid, lo - shift, hi - shift, color=LINE_COLOUR, alpha=0.18, lw=0,
                        label=f"{100 * confidence:g}% confidence band", zorder=1)


def _draw_compute_law(ax, fits: xr.Dataset, game: str, quantity: str, metric: str, ylabel: str,
                      expert_return: float | None = None, methods: bool = True) -> tuple[list, list[str]]:
    """On `ax`, per-budget optima (hollow if edge, grey if not used) with the power law and its band,
    and with `methods` the other methods' optima and laws, the holdout refit and the forecast at C*.
    Returns the legend's handles and labels."""
    game_fits = fits.sel(game=game)
    budgets = game_fits["flops"].values.astype(float)
    values = game_fits[quantity].values
    lo, hi = game_fits[f"{quantity}_lo"].values, game_fits[f"{quantity}_hi"].values
    edge = game_fits["edge"].sel(metric=metric).values.astype(bool)
    used = game_fits["used_in_fit"].sel(metric=metric).values.astype(bool)
    shown = np.isfinite(values)
    colours = BudgetColours(budgets[shown] if shown.any() else budgets)
    for c, v, l, h, e, u in zip(budgets[shown], values[shown], lo[shown], hi[shown], edge[shown], used[shown]):
        colour = colours(c) if u else "grey"
        if np.isfinite(l) and np.isfinite(h):
            ax.errorbar([c], [v], yerr=[[v - l], [h - v]], color=colour, lw=1, capsize=2, zorder=3)
        ax.scatter([c], [v], s=40, zorder=4, edgecolors=colour, linewidths=1.2, facecolors="none" if e else colour)
    if shown.any():
        x_grid = np.geomspace(budgets[shown].min() / 1.5, budgets[shown].max() * 1.5, 200)
    else:
        x_grid = np.geomspace(budgets.min(), budgets.max(), 200)
    symbol = LAW_SYMBOLS[quantity]
    forecast_budget = float(fits["forecast_budget"].sel(game=game)) if "forecast_budget" in fits else np.nan
    if np.isfinite(forecast_budget) and shown.any():
        x_grid = np.geomspace(x_grid.min(), max(x_grid.max(), forecast_budget * 1.5), 200)
    shift = float(fits["return_shift"].sel(game=game)) if quantity == "r_max" and "return_shift" in fits else 0.0
    _draw_law(ax, fits, game, quantity, x_grid, _law_label(fits, game, quantity, symbol), shift=shift)
    if methods and "laws" in fits:
        _draw_method_extras(ax, fits, game, quantity, metric, x_grid, shift)
    if expert_return is not None and np.isfinite(expert_return):
        ax.axhline(expert_return, ls="--", color="black", lw=1.2, label="expert")
    ax.set_xscale("log")
    log_y = str(fits["law_form"].sel(game=game, quantity=quantity).item()) != LINEAR_IN_LOG10_X
    if log_y and shown.any() and np.all(values[shown] > 0) and not shift:
        ax.set_yscale("log")
        if quantity == "l_min":
            _plain_log_ticks(ax.yaxis)
    _decade_ticks(ax.xaxis)
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if edge[shown].any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey"))
        labels.append(_edge_text(fits))
    if (~used[shown]).any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="grey", mec="grey"))
        labels.append("not used in the power-law fit")
    return handles, labels


def _plot_compute_law(fits: xr.Dataset, game: str, quantity: str, metric: str, stem: str, ylabel: str,
                      out_dir: Path, expert_return: float | None = None) -> list[Path]:
    """`stem`: one power law in compute of one game, with every method's optima."""
    fig = _new_figure()
    ax = fig.add_subplot()
    handles, labels = _draw_compute_law(ax, fits, game, quantity, metric, ylabel, expert_return)
    ax.set_title(f"{game}: ${LAW_SYMBOLS[quantity]}$ vs compute")
    fig.legend(handles, labels, loc="outside lower center", frameon=False, fontsize="small")
    return _save(fig, out_dir, stem)


# ---------------------------------------------------------------------------------------------
# Return vs loss
# ---------------------------------------------------------------------------------------------

def _draw_return_vs_loss(ax, results: xr.Dataset, fits: xr.Dataset, game: str) -> bool:
    """On `ax`, every seed-averaged (loss, return) point coloured by budget, with R = a (1/L)^k, the
    saturating law and a colour bar of the budgets. False (nothing drawn) when no run has both."""
    means = seed_means(results.sel(game=game)[["loss", "return"]])
    table = means.to_dataframe().dropna(subset=["loss", "return"]).reset_index()
    if not len(table):
        return False
    colours = BudgetColours(table["flops"].unique())
    positive = table["return"] > 0
    ax.scatter(table["loss"][positive], table["return"][positive], s=22, zorder=3,
               c=[colours(c) for c in table["flops"][positive]])
    if (~positive).any():
        ax.scatter(table["loss"][~positive], table["return"][~positive], s=22, zorder=3, facecolors="none",
                   edgecolors=[colours(c) for c in table["flops"][~positive]], linewidths=1.2)
        ax.scatter([], [], facecolors="none", edgecolors="grey",
                   label=f"return ≤ 0 (excluded from fit, n={int((~positive).sum())})")
    shift = float(fits["return_shift"].sel(game=game)) if "return_shift" in fits else 0.0
    x_grid = np.geomspace(table["loss"].min() / 1.05, table["loss"].max() * 1.05, 200)
    _draw_law(ax, fits, game, "return_vs_loss", x_grid, _law_label(fits, game, "return_vs_loss", "R", "(1/L)"),
              x_transform=lambda loss: 1.0 / loss, shift=shift)
    saturating = saturating_fit(fits, game) if "saturating" in fits else None
    if saturating is not None:
        a, d, b = saturating.coef
        ax.plot(x_grid, saturating.predict(1.0 / x_grid), color=PARAMETRIC_COLOUR, lw=1.4, ls="-.", zorder=2,
                label=rf"$R = 1/({_latex_number(a)}\,(1/L)^{{{d:.2f}}} + {_latex_number(b)})$")
        with np.errstate(over="ignore"):  # an undetermined fit's band overflows: drawn only where finite
            lo, hi = saturating.band(1.0 / x_grid, FitConfig.from_attrs(fits.attrs).confidence, include_noise=False)
        finite = np.isfinite(lo) & np.isfinite(hi)
        if finite.any():
            ax.fill_between(x_grid, np.where(finite, lo, np.nan), np.where(finite, hi, np.nan),
                            color=PARAMETRIC_COLOUR, alpha=0.12, lw=0, zorder=1)
    if shift:
        ax.plot([], [], ls="", label=f"fits use R + {shift:g} (negative_returns = shift)")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    returns = table["return"].to_numpy(float)
    if positive.all():
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        limits = (returns.min() / 2, returns.max() * 2)
    else:
        margin = 0.1 * max(np.ptp(returns), abs(returns.max()), 1e-9)
        limits = (returns.min() - margin, returns.max() + margin)
    # The axis follows the points: an undetermined law's band (up to 1e244 here once) would
    # otherwise squash them into a line; a band that fills the panel says as much.
    ax.set_ylim(*limits)
    ax.set_xlabel(loss_axis_label(fitted_loss_metric(fits, game), "L"))
    ax.set_ylabel("mean episode return R")
    colours.colorbar(ax.get_figure(), ax)
    return True


def _plot_return_vs_loss(results: xr.Dataset, fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """return_vs_loss: the return-vs-loss law of one game."""
    fig = _new_figure()
    ax = fig.add_subplot()
    if not _draw_return_vs_loss(ax, results, fits, game):
        return _empty_figure(out_dir, "return_vs_loss", f"{game}: no run has both a loss and a return")
    ax.set_title(f"{game}: return vs loss")
    fig.legend(loc="outside lower center", frameon=False, fontsize="small")
    return _save(fig, out_dir, "return_vs_loss")


# ---------------------------------------------------------------------------------------------
# Allocation: isoFLOP methods beside the parametric fit
# ---------------------------------------------------------------------------------------------

def _plot_allocation(fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """N_opt(C) and D_opt(C) by the raw optimum, the parabola vertex and the L(N, D) fit, with exponents."""
    game_fits = fits.sel(game=game)
    budgets = game_fits["flops"].values.astype(float)
    if not np.isfinite(game_fits["raw_n_opt"].values).any():
        return _empty_figure(out_dir, "allocation", f"{game}: no loss values, so no compute-optimal allocation")
    fig = _new_figure(9.0, 4.2)
    axes = fig.subplots(1, 2)
    for ax, quantity, ylabel in zip(axes, ("n_opt", "d_opt"), ("parameters $N_{opt}$", "samples $D_{opt}$")):
        for method, colour, marker, values in (
                ("raw", RAW_COLOUR, "x", game_fits[f"raw_{quantity}"].values),
                ("vertex", LINE_COLOUR, "o", game_fits[quantity].values),
                ("parametric", PARAMETRIC_COLOUR, None,
                 game_fits["parametric_opt"].sel(ptarget=quantity, bound="value").values)):
            row = _sel(game_fits["laws"], method=method, fit_set="all", quantity=quantity)
            slope, lo, hi = (float(row.sel(stat=k)) for k in ("slope", "slope_lo", "slope_hi"))
            label = f"{method}: exponent {slope:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "") \
                if np.isfinite(slope) else f"{method}: not fitted"
            keep = np.isfinite(values)
            if marker:
                ax.scatter(budgets[keep], values[keep], marker=marker, color=colour, s=30, label=label, zorder=3)
                fit = law_fit(fits, game, quantity, method=method)
                if fit is not None and keep.any():
                    ax.plot(budgets[keep], fit.predict(budgets[keep]), color=colour, lw=1, ls=":", zorder=2)
            elif keep.any():
                ax.plot(budgets[keep], values[keep], color=colour, lw=1.6, label=label, zorder=2)
                opt = game_fits["parametric_opt"].sel(ptarget=quantity)
                if np.isfinite(opt.sel(bound="lo").values[keep]).all():
                    ax.fill_between(budgets[keep], opt.sel(bound="lo").values[keep], opt.sel(bound="hi").values[keep],
                                    color=colour, alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute budget C (FLOPs)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="x-small", frameon=False)
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}%"
    metric = LOSS_METRIC_TEXT[fitted_loss_metric(fits, game)]
    fig.suptitle(f"{game}: compute-optimal allocation of the {metric} by method ({level} intervals)")
    return _save(fig, out_dir, "allocation")


# ---------------------------------------------------------------------------------------------
# The laws at a glance: one page per game (as the paper's Figure 1)
# ---------------------------------------------------------------------------------------------

def _law_headline(fits: xr.Dataset, game: str, quantity: str, formula: str) -> str:
    """`formula` (mathtext), then the vertex law's fitted exponent with its interval and R², or why it is not fitted."""
    if law_fit(fits, game, quantity) is None:
        return f"{formula}: not fitted"
    row = fits["law"].sel(game=game, quantity=quantity)
    name = "slope" if str(fits["law_form"].sel(game=game, quantity=quantity).item()) == LINEAR_IN_LOG10_X else "exponent"
    interval = format_interval(row)
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}% CI"
    spread = f"{interval} ({level})" if interval != "n/a" else "(no interval: 2 points)"
    return f"{formula}\n{name} {float(row.sel(stat='slope')):.3f} {spread}, R² = {float(row.sel(stat='r2')):.3f}"


def _loss_frontier_label(fits: xr.Dataset, game: str) -> str:
    return f"minimum held-out loss $L_{{min}}$ ({loss_metric_name(fits, game)})"


def overview_figure(results: xr.Dataset, fits: xr.Dataset, game: str) -> Figure:
    """One game's laws on one page: the isoFLOP profiles of the loss with their parabolas and optima,
    L_min(C) and N_opt(C) with their power laws and bands, and return vs loss with its law; each law's
    exponent, interval and R² in its panel's title (the single figures' drawing code, panel by panel)."""
    fig = _new_figure(12.0, 10.0)
    (profiles, frontier), (allocation, returns) = fig.subplots(2, 2)
    handles = _draw_isoflop(profiles, results, fits, game, "loss")
    if handles is None:
        _empty_panel(profiles, f"{game}: no loss values in the results")
    else:
        profiles.set_title("isoFLOP profiles of the held-out loss\n(colour: budget; dashed: parabola; star: its optimum)")
        profiles.legend(handles=handles, fontsize="x-small", frameon=False)
    for ax, quantity, formula, ylabel in (
            (frontier, "l_min", r"$L_{min} \propto C^{a}$", _loss_frontier_label(fits, game)),
            (allocation, "n_opt", r"$N_{opt} \propto C^{a}$", "loss-optimal parameters $N_{opt}$")):
        handles, labels = _draw_compute_law(ax, fits, game, quantity, "loss", ylabel, methods=False)
        ax.set_title(_law_headline(fits, game, quantity, formula))
        ax.legend(handles, labels, fontsize="x-small", frameon=False)
    if _draw_return_vs_loss(returns, results, fits, game):
        returns.set_title(_law_headline(fits, game, "return_vs_loss", r"$R \propto (1/L)^{k}$"))
        returns.legend(fontsize="x-small", frameon=False)
    else:
        _empty_panel(returns, f"{game}: no run has both a loss and a return")
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}%"
    fig.suptitle(f"{game}: the scaling laws at a glance (isoFLOP vertex method; {level} intervals)", fontsize="large")
    return fig


# ---------------------------------------------------------------------------------------------
# Forecast: the predicted compute-optimal agent at C* against the one trained there
# ---------------------------------------------------------------------------------------------

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
    shift = float(game_fits["return_shift"]) if quantity == "r_max" and "return_shift" in fits else 0.0
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
        _plain_log_ticks(ax.yaxis)
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
        fig = _new_figure(10.0, 4.6)
        axes = fig.subplots(1, 2)
        _forecast_panel(axes[0], fits, verdict, "l_min", "loss")
        _forecast_panel(axes[1], fits, verdict, "r_max", "return")
        level = f"{100 * verdict['confidence']:g}%"
        fig.suptitle(f"{game}: forecast at C* = {budget_label(verdict['budget'])} FLOPs vs the agent trained there "
                     f"(width {verdict['width']}, {verdict['params']:,} parameters; {level} intervals)")
        return _save(fig, Path(out_dir), FORECAST_STEM)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

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
        paths += _save(overview_figure(results, fits, game), out_dir, OVERVIEW_STEM)
        paths += _plot_isoflop(results, fits, game, "loss", out_dir)
        paths += _plot_isoflop(results, fits, game, "return", out_dir)
        paths += _plot_compute_law(fits, game, "n_opt", "loss", "optimal_params",
                                   "loss-optimal parameters $N_{opt}$" + metric, out_dir)
        paths += _plot_compute_law(fits, game, "d_opt", "loss", "optimal_samples",
                                   "training samples at $N_{opt}$ ($D_{opt}$)" + metric, out_dir)
        paths += _plot_compute_law(fits, game, "l_min", "loss", "loss_frontier", _loss_frontier_label(fits, game),
                                   out_dir)
        paths += _plot_compute_law(fits, game, "r_max", "return", "return_frontier", "maximum return $R_{max}$",
                                   out_dir, expert_return=expert)
        paths += _plot_return_vs_loss(results, fits, game, out_dir)
        paths += _plot_allocation(fits, game, out_dir)
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
