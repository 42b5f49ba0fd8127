"""The headline numbers of the report's front page, as reStructuredText tables.

`snakemake --report` renders the front page (workflow/report/frontpage.rst, the Snakefile's global
`report:`) with Jinja, then docutils; once these files are report items (workflow/rules/report.smk)
it takes them in with docutils' `include` directive, so the front page shows this study's numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ilscaling.fit import LAW_LABELS, LAW_QUANTITIES, LINEAR_IN_LOG10_X, FitConfig, format_interval
from ilscaling.forecast import VERDICT_COLUMNS, verdict_cells
from ilscaling.flops import budget_label
from ilscaling.io import atomic_path, open_netcdf, read_json
from ilscaling.plots.style import loss_metric_name

LAW_COLUMNS = ("game", "method", "law", "exponent", "interval", "R²", "points fitted")
HEADLINE_METHODS = ("raw", "vertex")  # the per-budget optima: best evaluated size, parabola vertex
RST_SPECIAL = "\\`*_|"


def rst_text(text: str) -> str:
    """`text` with reStructuredText's inline markup characters escaped (notes and labels are free text)."""
    return "".join("\\" + c if c in RST_SPECIAL else c for c in str(text))


def list_table(title: str, header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """A docutils list-table; cells are already reStructuredText."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [list(header), *rows]:
        lines += [f"   {'*' if i == 0 else ' '} - {cell}" for i, cell in enumerate(row)]
    return lines + [""]


def _law_row(fits: xr.Dataset, game: str, method: str, quantity: str) -> list[str]:
    where = {"game": game, "method": method, "fit_set": "all", "quantity": quantity}
    form = str(fits["law_forms"].sel(where).item())
    label = "R_max = a + b log10 C" if form == LINEAR_IN_LOG10_X else LAW_LABELS[quantity]
    row = fits["laws"].sel(where)
    slope = float(row.sel(stat="slope"))
    if not np.isfinite(slope):
        note = str(fits["law_notes"].sel(where).item())
        return [game, method, f"``{label}``", "not fitted", rst_text(note) or "–", "–", "0"]
    return [game, method, f"``{label}``", f"{slope:.3f}", format_interval(row), f"{float(row.sel(stat='r2')):.3f}",
            f"{int(row.sel(stat='n_points'))}"]


def laws_rst(fits: xr.Dataset) -> str:
    """Every game's fitted laws by the raw and the vertex optima (all budgets): exponent, interval, R²,
    budgets; the loss metric."""
    level = f"{100 * FitConfig.from_attrs(fits.attrs).confidence:g}%"
    games = [str(g) for g in fits["game"].values]
    rows = [_law_row(fits, game, method, quantity) for game in games for method in HEADLINE_METHODS
            for quantity in LAW_QUANTITIES]
    losses = "; ".join(f"{game}: {rst_text(loss_metric_name(fits, game))}" for game in games)
    lines = list_table(f"Fitted power laws (raw: the best evaluated size per budget; vertex: the isoFLOP parabola; "
                       f"all budgets; {level} confidence intervals)", LAW_COLUMNS, rows)
    return "\n".join(lines + [f"Held-out loss: {losses}. Every fit with its checks: summary.md.", ""])


def verdicts_rst(verdicts: list[dict]) -> str:
    """Every game's forecast agent at C*: the vertex method's prediction against the measurement."""
    rows = [[rst_text(cell) if i < 3 else cell for i, cell in enumerate(verdict_cells(v))] for v in verdicts]
    budgets = ", ".join(f"{v['game']} {budget_label(v['budget'])}" for v in verdicts)
    lines = list_table(f"Forecast verdicts: the compute-optimal agent at C* ({budgets} FLOPs), predicted "
                       "(isoFLOP vertex method) vs measured", VERDICT_COLUMNS, rows)
    return "\n".join(lines + ["Every method's verdict: verdict.md.", ""])


def _write(text: str, out: str | Path) -> str:
    with atomic_path(out, suffix=".rst") as tmp:
        tmp.write_text(text)
    return text


def write_laws_rst(fits_nc: str | Path, out: str | Path) -> str:
    with open_netcdf(fits_nc, "fits") as fits:
        return _write(laws_rst(fits.load()), out)


def write_verdicts_rst(verdict_paths: list[str | Path], out: str | Path) -> str:
    return _write(verdicts_rst([read_json(path, "verdict") for path in verdict_paths]), out)
