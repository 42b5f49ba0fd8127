"""The figures of the laws: isoFLOP profiles, each law in compute with every method, return vs loss,
and the compute-optimal allocation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.lines import Line2D

from ilscaling.fit import (LINEAR_IN_LOG10_X, LOSS_METRIC_TEXT, FitConfig, fitted_loss_metric, law_fit, loss_axis_label,
                           saturating_fit, seed_means)
from ilscaling.flops import budget_label
from ilscaling.plots.style import (BudgetColours, HOLDOUT_COLOUR, LAW_SYMBOLS, LINE_COLOUR, PARAMETRIC_COLOUR,
                                   RAW_COLOUR, decade_ticks, edge_text, empty_figure, latex_number,
                                   loss_metric_name, new_figure, plain_log_ticks, save, scalar, sel)


# ---------------------------------------------------------------------------------------------
# isoFLOP profiles
# ---------------------------------------------------------------------------------------------

def draw_isoflop(ax, results: xr.Dataset, fits: xr.Dataset, game: str, metric: str) -> list[Line2D] | None:
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
        log_n = np.linspace(scalar(fits, "quad_log10n_min", **where), scalar(fits, "quad_log10n_max", **where), 100)
        curve = np.polyval(coef, log_n)
        ax.plot(10**log_n, 10**curve if loss_metric else curve, ls="--", lw=1.2, color=colour, zorder=2)
        best_x = scalar(fits, optimum_x, game=game, flops=budget)
        best_y = scalar(fits, optimum_y, game=game, flops=budget)
        ax.scatter([best_x], [best_y], marker="*", s=150, zorder=4, edgecolors="black", linewidths=0.8,
                   facecolors="none" if edge else colour)
    ax.set_xscale("log")
    if loss_metric:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(loss_axis_label(fitted_loss_metric(fits, game)) if loss_metric else "mean episode return")
    colours.colorbar(ax.get_figure(), ax)

    handles = [Line2D([], [], ls="--", color="grey", label="quadratic fit in log10 N"),
               Line2D([], [], ls="", marker="*", ms=11, mfc="grey", mec="black",
                      label="optimum (vertex of the fit)")]
    if any_edge:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey", label=edge_text(fits)))
    if any_skipped:
        min_sizes = FitConfig.from_attrs(fits.attrs).min_sizes_per_budget
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey",
                              label=f"skipped: fewer than {min_sizes} sizes"))
    return handles


def plot_isoflop(results: xr.Dataset, fits: xr.Dataset, game: str, metric: str, out_dir: Path) -> list[Path]:
    """isoflop_`metric`: the isoFLOP profiles of one game."""
    fig = new_figure(5.6, 4.6)
    ax = fig.add_subplot()
    handles = draw_isoflop(ax, results, fits, game, metric)
    if handles is None:
        return empty_figure(out_dir, f"isoflop_{metric}", f"{game}: no {metric} values in the results")
    what = f"held-out loss ({loss_metric_name(fits, game)})" if metric == "loss" else "return"
    ax.set_title(f"{game}: isoFLOP profiles of {what}")
    fig.legend(handles=handles, loc="outside lower center", ncols=1, frameon=False, fontsize="small")
    return save(fig, out_dir, f"isoflop_{metric}")


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
        formula = rf"${symbol} = {latex_number(fit.intercept)} + ({fit.slope:.3g}{spread})\,\log_{{10}} {x_symbol}$"
    else:
        formula = rf"${symbol} = {latex_number(fit.prefactor)}\,{x_symbol}^{{{fit.slope:.3f}{spread}}}$"
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
    if quantity == "l_min":
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
    held = sel(game_fits["held_out"], method="vertex", metric=metric).values.astype(bool)
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
    forecast = sel(game_fits["forecast"], method="vertex", target=target)
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


def draw_compute_law(ax, fits: xr.Dataset, game: str, quantity: str, metric: str, ylabel: str,
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
    forecast_budget = float(fits["forecast_budget"].sel(game=game))
    if shown.any():
        x_grid = np.geomspace(x_grid.min(), max(x_grid.max(), forecast_budget * 1.5), 200)
    shift = float(fits["return_shift"].sel(game=game)) if quantity == "r_max" else 0.0
    _draw_law(ax, fits, game, quantity, x_grid, _law_label(fits, game, quantity, symbol), shift=shift)
    if methods:
        _draw_method_extras(ax, fits, game, quantity, metric, x_grid, shift)
    if expert_return is not None and np.isfinite(expert_return):
        ax.axhline(expert_return, ls="--", color="black", lw=1.2, label="expert")
    ax.set_xscale("log")
    log_y = str(fits["law_form"].sel(game=game, quantity=quantity).item()) != LINEAR_IN_LOG10_X
    if log_y and shown.any() and np.all(values[shown] > 0) and not shift:
        ax.set_yscale("log")
        if quantity == "l_min":
            plain_log_ticks(ax.yaxis)
    decade_ticks(ax.xaxis)
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if edge[shown].any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey"))
        labels.append(edge_text(fits))
    if (~used[shown]).any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="grey", mec="grey"))
        labels.append("not used in the power-law fit")
    return handles, labels


def plot_compute_law(fits: xr.Dataset, game: str, quantity: str, metric: str, stem: str, ylabel: str,
                      out_dir: Path, expert_return: float | None = None) -> list[Path]:
    """`stem`: one power law in compute of one game, with every method's optima."""
    fig = new_figure()
    ax = fig.add_subplot()
    handles, labels = draw_compute_law(ax, fits, game, quantity, metric, ylabel, expert_return)
    ax.set_title(f"{game}: ${LAW_SYMBOLS[quantity]}$ vs compute")
    fig.legend(handles, labels, loc="outside lower center", frameon=False, fontsize="small")
    return save(fig, out_dir, stem)


# ---------------------------------------------------------------------------------------------
# Return vs loss
# ---------------------------------------------------------------------------------------------


def draw_return_vs_loss(ax, results: xr.Dataset, fits: xr.Dataset, game: str) -> bool:
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
    shift = float(fits["return_shift"].sel(game=game))
    x_grid = np.geomspace(table["loss"].min() / 1.05, table["loss"].max() * 1.05, 200)
    _draw_law(ax, fits, game, "return_vs_loss", x_grid, _law_label(fits, game, "return_vs_loss", "R", "(1/L)"),
              x_transform=lambda loss: 1.0 / loss, shift=shift)
    saturating = saturating_fit(fits, game)
    if saturating is not None:
        a, d, b = saturating.coef
        ax.plot(x_grid, saturating.predict(1.0 / x_grid), color=PARAMETRIC_COLOUR, lw=1.4, ls="-.", zorder=2,
                label=rf"$R = 1/({latex_number(a)}\,(1/L)^{{{d:.2f}}} + {latex_number(b)})$")
        with np.errstate(over="ignore"):  # an undetermined fit's band overflows: drawn only where finite
            lo, hi = saturating.band(1.0 / x_grid, FitConfig.from_attrs(fits.attrs).confidence, include_noise=False)
        finite = np.isfinite(lo) & np.isfinite(hi)
        if finite.any():
            ax.fill_between(x_grid, np.where(finite, lo, np.nan), np.where(finite, hi, np.nan),
                            color=PARAMETRIC_COLOUR, alpha=0.12, lw=0, zorder=1)
    if shift:
        ax.plot([], [], ls="", label=f"fits use R + {shift:g} (negative_returns = shift)")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    returns = table["return"].to_numpy(float)
    if positive.all():
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
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


def plot_return_vs_loss(results: xr.Dataset, fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """return_vs_loss: the return-vs-loss law of one game."""
    fig = new_figure()
    ax = fig.add_subplot()
    if not draw_return_vs_loss(ax, results, fits, game):
        return empty_figure(out_dir, "return_vs_loss", f"{game}: no run has both a loss and a return")
    ax.set_title(f"{game}: return vs loss")
    fig.legend(loc="outside lower center", frameon=False, fontsize="small")
    return save(fig, out_dir, "return_vs_loss")


# ---------------------------------------------------------------------------------------------
# Allocation: isoFLOP methods beside the parametric fit
# ---------------------------------------------------------------------------------------------


def plot_allocation(fits: xr.Dataset, game: str, out_dir: Path) -> list[Path]:
    """N_opt(C) and D_opt(C) by the raw optimum, the parabola vertex and the L(N, D) fit, with exponents."""
    game_fits = fits.sel(game=game)
    budgets = game_fits["flops"].values.astype(float)
    if not np.isfinite(game_fits["raw_n_opt"].values).any():
        return empty_figure(out_dir, "allocation", f"{game}: no loss values, so no compute-optimal allocation")
    fig = new_figure(9.0, 4.2)
    axes = fig.subplots(1, 2)
    for ax, quantity, ylabel in zip(axes, ("n_opt", "d_opt"), ("parameters $N_{opt}$", "samples $D_{opt}$")):
        for method, colour, marker, values in (
                ("raw", RAW_COLOUR, "x", game_fits[f"raw_{quantity}"].values),
                ("vertex", LINE_COLOUR, "o", game_fits[quantity].values),
                ("parametric", PARAMETRIC_COLOUR, None,
                 game_fits["parametric_opt"].sel(ptarget=quantity, bound="value").values)):
            row = sel(game_fits["laws"], method=method, fit_set="all", quantity=quantity)
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
    return save(fig, out_dir, "allocation")
