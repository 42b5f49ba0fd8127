"""The laws at a glance: one page per game (as the paper's Figure 1), drawn by the single figures' code."""

from __future__ import annotations

import xarray as xr
from matplotlib.figure import Figure

from ilscaling.fit import LINEAR_IN_LOG10_X, FitConfig, format_interval, law_fit
from ilscaling.plots.laws import draw_compute_law, draw_isoflop, draw_return_vs_loss
from ilscaling.plots.style import empty_panel, loss_metric_name, new_figure


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


def loss_frontier_label(fits: xr.Dataset, game: str) -> str:
    return f"minimum held-out loss $L_{{min}}$ ({loss_metric_name(fits, game)})"


def overview_figure(results: xr.Dataset, fits: xr.Dataset, game: str) -> Figure:
    """One game's laws on one page: the isoFLOP profiles of the loss with their parabolas and optima,
    L_min(C) and N_opt(C) with their power laws and bands, and return vs loss with its law; each law's
    exponent, interval and R² in its panel's title (the single figures' drawing code, panel by panel)."""
    fig = new_figure(12.0, 10.0)
    (profiles, frontier), (allocation, returns) = fig.subplots(2, 2)
    handles = draw_isoflop(profiles, results, fits, game, "loss")
    if handles is None:
        empty_panel(profiles, f"{game}: no loss values in the results")
    else:
        profiles.set_title("isoFLOP profiles of the held-out loss\n(colour: budget; dashed: parabola; star: its optimum)")
        profiles.legend(handles=handles, fontsize="x-small", frameon=False)
    for ax, quantity, formula, ylabel in (
            (frontier, "l_min", r"$L_{min} \propto C^{a}$", loss_frontier_label(fits, game)),
            (allocation, "n_opt", r"$N_{opt} \propto C^{a}$", "loss-optimal parameters $N_{opt}$")):
        handles, labels = draw_compute_law(ax, fits, game, quantity, "loss", ylabel, methods=False)
        ax.set_title(_law_headline(fits, game, quantity, formula))
        ax.legend(handles, labels, fontsize="x-small", frameon=False)
    if draw_return_vs_loss(returns, results, fits, game):
        returns.set_title(_law_headline(fits, game, "return_vs_loss", r"$R \propto (1/L)^{k}$"))
        returns.legend(fontsize="x-small", frameon=False)
    else:
        empty_panel(returns, f"{game}: no run has both a loss and a return")
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}%"
    fig.suptitle(f"{game}: the scaling laws at a glance (isoFLOP vertex method; {level} intervals)", fontsize="large")
    return fig
