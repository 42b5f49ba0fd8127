"""Figures of one game, drawn from the results and fits files alone (nothing is refitted).

Every figure is written as PNG and PDF under the stems of FIGURE_STEMS. Parabolas come from
the stored quadratic coefficients and power-law lines and bands from the stored fit
statistics (`ilscaling.scaling.law_fit`), so a figure always shows exactly what was fitted.
"""

from __future__ import annotations

import os
import tempfile
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

from ilscaling.scaling import LINEAR_IN_LOG10_X, FitConfig, budget_text, law_fit, seed_means

FIGURE_STEMS = ("isoflop_loss", "isoflop_return", "optimal_params", "optimal_samples", "loss_frontier",
                "return_frontier", "return_vs_loss")
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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=out_dir)
        os.close(fd)
        try:
            # Fixed metadata keeps repeated builds byte-identical where the backend allows.
            metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=200, metadata=metadata)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; figures are meant to be shared
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
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
        bar.set_ticks(shown, labels=[budget_text(b) for b in shown])


def _plain_log_ticks(axis) -> None:
    """Plain-number ticks (3, 4, 5 rather than 3x10^0) on a log axis spanning few decades.

    Losses typically span less than a decade, where the default log ticks are unreadable.
    """
    low, high = axis.get_view_interval()
    decades = np.log10(high / low)
    if decades > 3:
        return
    subs = np.arange(1.0, 10.0) if decades < 1 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _scalar(data: xr.Dataset, name: str, **where) -> float:
    return float(data[name].sel(**where).item())


# ---------------------------------------------------------------------------------------------
# isoFLOP profiles
# ---------------------------------------------------------------------------------------------

def _plot_isoflop(results: xr.Dataset, fits: xr.Dataset, game: str, metric: str, out_dir: Path) -> list[Path]:
    """One curve per budget: points, dashed parabola, optimum; edge budgets hollow."""
    means = seed_means(results.sel(game=game))
    response = means[metric]
    budgets = [c for c in means["flops"].values if np.isfinite(response.sel(flops=c).values).any()]
    colours = BudgetColours(budgets)
    loss_metric = metric == "loss"
    optimum_x = "n_opt" if loss_metric else "n_opt_return"
    optimum_y = "l_min" if loss_metric else "r_max"
    fig = _new_figure(5.6, 4.6)
    ax = fig.add_subplot()
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
    ax.set_ylabel("held-out loss (cross entropy)" if loss_metric else "mean episode return")
    what = "held-out loss" if loss_metric else "return"
    ax.set_title(f"{game}: isoFLOP profiles of {what}")
    colours.colorbar(fig, ax)

    handles = [Line2D([], [], ls="--", color="grey", label="quadratic fit in log10 N"),
               Line2D([], [], ls="", marker="*", ms=11, mfc="grey", mec="black",
                      label="optimum (vertex of the fit)")]
    if any_edge:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey", label=_edge_text(fits)))
    if any_skipped:
        min_sizes = FitConfig.from_attrs(fits.attrs).min_sizes_per_budget
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey",
                              label=f"skipped: fewer than {min_sizes} sizes"))
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


def _draw_law(ax, fits: xr.Dataset, game: str, quantity: str, x_grid: np.ndarray, label: str,
              x_transform=lambda x: x) -> None:
    """Fitted line and confidence band at x_grid (x_transform maps plot x to the law's x)."""
    fit = law_fit(fits, game, quantity)
    if fit is None:
        note = str(fits["law_note"].sel(game=game, quantity=quantity).item())
        ax.plot([], [], ls="", label=textwrap.fill(note, 70))  # legend-only entry: says why no line
        return
    law_x = x_transform(x_grid)
    confidence = FitConfig.from_attrs(fits.attrs).confidence
    ax.plot(x_grid, fit.predict(law_x), color=LINE_COLOUR, lw=1.5, label=label, zorder=2)
    lo, hi = fit.confidence_band(law_x, confidence)
    if np.isfinite(lo).all():
        ax.fill_between(x_grid, lo, hi, color=LINE_COLOUR, alpha=0.18, lw=0,
                        label=f"{100 * confidence:g}% confidence band", zorder=1)


def _plot_compute_law(fits: xr.Dataset, game: str, quantity: str, metric: str, stem: str, ylabel: str,
                      out_dir: Path, expert_return: float | None = None) -> list[Path]:
    """Per-budget optima (hollow if edge, grey if not used) with the power law and its band."""
    game_fits = fits.sel(game=game)
    budgets = game_fits["flops"].values.astype(float)
    values = game_fits[quantity].values
    lo, hi = game_fits[f"{quantity}_lo"].values, game_fits[f"{quantity}_hi"].values
    edge = game_fits["edge"].sel(metric=metric).values.astype(bool)
    used = game_fits["used_in_fit"].sel(metric=metric).values.astype(bool)
    shown = np.isfinite(values)

    fig = _new_figure()
    ax = fig.add_subplot()
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
    _draw_law(ax, fits, game, quantity, x_grid, _law_label(fits, game, quantity, symbol))
    if expert_return is not None and np.isfinite(expert_return):
        ax.axhline(expert_return, ls="--", color="black", lw=1.2, label="expert")
    ax.set_xscale("log")
    log_y = str(fits["law_form"].sel(game=game, quantity=quantity).item()) != LINEAR_IN_LOG10_X
    if log_y and np.all(values[shown] > 0):
        ax.set_yscale("log")
        if quantity == "l_min":
            _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{game}: ${symbol}$ vs compute")
    handles, labels = ax.get_legend_handles_labels()
    if edge[shown].any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey"))
        labels.append(_edge_text(fits))
    if (~used[shown]).any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="grey", mec="grey"))
        labels.append("not used in the power-law fit")
    fig.legend(handles, labels, loc="outside lower center", frameon=False, fontsize="small")
    return _save(fig, out_dir, stem)


# ---------------------------------------------------------------------------------------------
# Return vs loss
# ---------------------------------------------------------------------------------------------

def _plot_return_vs_loss(results: xr.Dataset, fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """Every seed-averaged (loss, return) point coloured by budget, with R = a (1/L)^k."""
    means = seed_means(results.sel(game=game)[["loss", "return"]])
    table = means.to_dataframe().dropna(subset=["loss", "return"]).reset_index()
    fig = _new_figure()
    ax = fig.add_subplot()
    colours = BudgetColours(table["flops"].unique() if len(table) else means["flops"].values)
    positive = table["return"] > 0
    ax.scatter(table["loss"][positive], table["return"][positive], s=22, zorder=3,
               c=[colours(c) for c in table["flops"][positive]])
    if (~positive).any():
        ax.scatter(table["loss"][~positive], table["return"][~positive], s=22, zorder=3, facecolors="none",
                   edgecolors=[colours(c) for c in table["flops"][~positive]], linewidths=1.2)
        ax.scatter([], [], facecolors="none", edgecolors="grey",
                   label=f"return ≤ 0 (excluded from fit, n={int((~positive).sum())})")
    if len(table):
        x_grid = np.geomspace(table["loss"].min() / 1.05, table["loss"].max() * 1.05, 200)
        _draw_law(ax, fits, game, "return_vs_loss", x_grid, _law_label(fits, game, "return_vs_loss", "R", "(1/L)"),
                  x_transform=lambda loss: 1.0 / loss)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    if positive.all() and len(table):
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("held-out loss L (cross entropy)")
    ax.set_ylabel("mean episode return R")
    ax.set_title(f"{game}: return vs loss")
    colours.colorbar(fig, ax)
    fig.legend(loc="outside lower center", frameon=False, fontsize="small")
    return _save(fig, out_dir, "return_vs_loss")


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def plot_game(results: xr.Dataset, fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """All FIGURE_STEMS of one game as PNG and PDF in out_dir; returns the written paths."""
    if game not in set(map(str, fits["game"].values)) or game not in set(map(str, results["game"].values)):
        raise ValueError(f"game {game!r} is not in both the results and the fits file")
    out_dir = Path(out_dir)
    expert = float(results["expert_return"].sel(game=game)) if "expert_return" in results else float("nan")
    paths = []
    with sns.axes_style("ticks"), sns.plotting_context("paper", font_scale=1.1):
        paths += _plot_isoflop(results, fits, game, "loss", out_dir)
        paths += _plot_isoflop(results, fits, game, "return", out_dir)
        paths += _plot_compute_law(fits, game, "n_opt", "loss", "optimal_params", "loss-optimal parameters $N_{opt}$",
                                   out_dir)
        paths += _plot_compute_law(fits, game, "d_opt", "loss", "optimal_samples",
                                   "training samples at $N_{opt}$ ($D_{opt}$)", out_dir)
        paths += _plot_compute_law(fits, game, "l_min", "loss", "loss_frontier", "minimum held-out loss $L_{min}$",
                                   out_dir)
        paths += _plot_compute_law(fits, game, "r_max", "return", "return_frontier", "maximum return $R_{max}$",
                                   out_dir, expert_return=expert)
        paths += _plot_return_vs_loss(results, fits, game, out_dir)
    return paths


def plot_all(results_nc: str | os.PathLike, fits_nc: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Figures of every game of the fits file, in out_dir/<game>/<stem>.png|.pdf."""
    with xr.open_dataset(results_nc) as results, xr.open_dataset(fits_nc) as fits:
        results, fits = results.load(), fits.load()
    paths = []
    for game in map(str, fits["game"].values):
        paths += plot_game(results, fits, game, Path(out_dir) / game)
    return paths
