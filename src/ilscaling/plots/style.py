"""What every figure shares: colours, the budget colour scale, file output, axes and small helpers."""

from __future__ import annotations

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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ilscaling.fit import LOSS_METRIC_TEXT, FitConfig, fitted_loss_metric
from ilscaling.flops import budget_label
from ilscaling.io import atomic_path

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


def latex_number(value: float) -> str:
    """3 significant digits, as mathtext, e.g. 1.23\\times10^{-5}."""
    mantissa, exponent = f"{value:.2e}".split("e")
    exponent = int(exponent)
    return mantissa if -2 <= exponent <= 3 and abs(value) >= 1e-2 else rf"{mantissa}\times10^{{{exponent}}}"


def edge_text(fits: xr.Dataset) -> str:
    excluded = FitConfig.from_attrs(fits.attrs).exclude_edge_budgets
    return EDGE_TEXT.format("excluded from fit" if excluded else "kept in fit")


def new_figure(width: float = 5.0, height: float = 4.0) -> Figure:
    # A bare Figure (no pyplot) is never registered globally, so nothing leaks between figures.
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
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


def empty_panel(ax, message: str) -> None:
    """An axes that says why it has nothing to show."""
    ax.text(0.5, 0.5, textwrap.fill(message, 40), ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def empty_figure(out_dir: Path, stem: str, message: str) -> list[Path]:
    """A figure that says why it has nothing to show (the file set stays complete)."""
    fig = new_figure()
    empty_panel(fig.add_subplot(), message)
    return save(fig, out_dir, stem)


def loss_metric_name(fits: xr.Dataset, game: str) -> str:
    """The held-out loss the fits were made on, in words (fits' `loss_metric` of the game)."""
    return LOSS_METRIC_TEXT[fitted_loss_metric(fits, game)]


def sel(data, **where):
    """.sel with a dict (the dimension `method` collides with .sel's own keyword)."""
    return data.sel(where)


def plain_log_ticks(axis) -> None:
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


def decade_ticks(axis) -> None:
    """Label a log axis at its decades only, when it shows one: over 1-2 decades matplotlib also
    labels the 2x, 3x, ... minor ticks, and their labels run into each other."""
    low, high = axis.get_view_interval()
    if np.floor(np.log10(high)) >= np.ceil(np.log10(low)):
        axis.set_minor_formatter(NullFormatter())


def scalar(data: xr.Dataset, name: str, **where) -> float:
    return float(data[name].sel(**where).item())
