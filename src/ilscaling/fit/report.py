"""The markdown summary of a fits Dataset: per game, every law by method with its intervals and
checks, the saturating loss law beside the pure one, flagged budgets, the parametric surface and
the forecast at C*. It reads fits.nc only, so it shows what was stored."""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from ilscaling.fit.config import (BOUNDS, FLOOR_INFO, FLOOR_METHODS, LAW_QUANTITIES, LAW_STATS, LINEAR_IN_LOG10_X,
                                  METHODS, METRICS, NOT_FITTED, TARGETS, FitConfig)
from ilscaling.fit.laws import better_loss_form
from ilscaling.fit.stats import SATURATING_PARAMETERS
from ilscaling.fit.store import fitted_loss_metric
from ilscaling.flops import budget_label
from ilscaling.results_file import LOSS_METRIC_TEXT

LAW_LABELS = {
    "n_opt": "N_opt ∝ C^b",
    "d_opt": "D_opt ∝ C^b",
    "l_min": "L_min ∝ C^b",
    "r_max": "R_max ∝ C^b",
    "return_vs_loss": "R ∝ (1/L)^k",
}


def format_interval(row: xr.DataArray, name: str = "slope") -> str:
    lo, hi = float(row.sel(stat=f"{name}_lo")), float(row.sel(stat=f"{name}_hi"))
    return "n/a" if not np.isfinite(lo) else f"[{lo:.3f}, {hi:.3f}]"


def _number(value: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}g}"


def _law_table(fits: xr.Dataset, game: str, level: str) -> list[str]:
    """Every law of every method: exponent, interval, fit quality, cross-validation, holdout."""
    lines = [f"| method | law | form | exponent | {level} interval | R² | points | CV folds | CV RMSE | "
             f"CV PI coverage | holdout RMSE | holdout in PI | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        for quantity in LAW_QUANTITIES:
            where = {"game": game, "method": method, "fit_set": "all", "quantity": quantity}
            if method != "vertex" and quantity == "return_vs_loss":
                continue  # one fit for every method, listed once
            if method == "parametric" and quantity == "r_max":
                continue
            row = fits["laws"].sel(where)
            form = str(fits["law_forms"].sel(where).item())
            note = str(fits["law_notes"].sel(where).item())
            label = LAW_LABELS[quantity] if form != LINEAR_IN_LOG10_X else "R_max = a + b log10 C"
            if form == NOT_FITTED:
                lines.append(f"| {method} | {label} | {form} | – | – | – | 0 | – | – | – | – | – | {note} |")
                continue
            stat = {s: float(row.sel(stat=s)) for s in LAW_STATS}
            folds = int(stat["cv_folds"]) if np.isfinite(stat["cv_folds"]) else 0
            lines.append(
                f"| {method} | {label} | {form} | {stat['slope']:.3f} | {format_interval(row)} | "
                f"{_number(stat['r2'])} | {int(stat['n_points'])} | {folds} | {_number(stat['cv_rmse'])} | "
                f"{_number(stat['cv_coverage'], 2)} | {_number(stat['holdout_rmse'])} | "
                f"{_number(stat['holdout_coverage'], 2)} | {note} |")
    return lines


def _triple_text(row: xr.DataArray, digits: int = 4) -> str:
    value, lo, hi = (float(row.sel(bound=k)) for k in BOUNDS)
    interval = f" [{_number(lo)}, {_number(hi)}]" if np.isfinite(lo) else ""
    return f"{_number(value, digits)}{interval}"


def floor_comparison(fits: xr.Dataset, game: str, method: str) -> tuple[str | None, str]:
    """`better_loss_form` of one game and method from a fits Dataset."""
    power = fits["laws"].sel({"game": game, "method": method, "fit_set": "all", "quantity": "l_min"})
    info = fits["floor_info"].sel(game=game, floor_method=method)
    return better_loss_form(float(power.sel(stat="cv_rmse")), float(info.sel(floor_stat="cv_rmse")),
                            float(info.sel(floor_stat="cv_folds")))


def _floor_table(fits: xr.Dataset, game: str, level: str) -> list[str]:
    """The saturating law E + A C^b beside the pure one, by method, and which cross-validates better."""
    lines = ["", f"Saturating loss law L_min(C) = E + A C^b beside the pure power law ({level} residual-bootstrap "
                 "intervals; CV and holdout errors in log10 L on the same budgets and folds):", "",
             "| method | E | A | b | points | usable resamples | Huber objective | CV RMSE pure / saturating | "
             "holdout RMSE pure / saturating | better cross-validated | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in FLOOR_METHODS:
        law = fits["floor_law"].sel(game=game, floor_method=method)
        info = {k: float(fits["floor_info"].sel(game=game, floor_method=method, floor_stat=k)) for k in FLOOR_INFO}
        note = str(fits["floor_note"].sel(game=game, floor_method=method).item())
        if not np.isfinite(float(law.sel(floor_param="E", bound="value"))):
            lines.append(f"| {method} | – | – | – | 0 | – | – | – | – | – | {note} |")
            continue
        power = fits["laws"].sel({"game": game, "method": method, "fit_set": "all", "quantity": "l_min"})
        _, verdict = floor_comparison(fits, game, method)
        usable = (f"{int(info['n_bootstrap_usable'])} of {int(info['n_bootstrap'])}"
                  if info["n_bootstrap"] > 0 else "–")
        lines.append(
            f"| {method} | {_triple_text(law.sel(floor_param='E'))} | {_triple_text(law.sel(floor_param='A'))} | "
            f"{_triple_text(law.sel(floor_param='b'))} | {int(info['n_points'])} | {usable} | "
            f"{_number(info['huber_objective'])} | {_number(float(power.sel(stat='cv_rmse')))} / "
            f"{_number(info['cv_rmse'])} | {_number(float(power.sel(stat='holdout_rmse')))} / "
            f"{_number(info['holdout_rmse'])} | {verdict} | {note} |")
    return lines


def _extra_tables(fits: xr.Dataset, game: str, level: str) -> list[str]:
    """Saturating return-vs-loss, parametric L(N, D), and the forecast of one game."""
    lines = [""]
    shift = float(fits["return_shift"].sel(game=game))
    sat = fits["saturating"].sel(game=game)
    if np.isfinite(sat.sel(bound="value")).all():
        a, d, b = (sat.sel(sat_param=k) for k in SATURATING_PARAMETERS)
        info = fits["saturating_info"].sel(game=game)
        lines += [f"Saturating return vs loss, R{' + ' + format(shift, 'g') if shift else ''} = 1 / (a (1/L)^d + b): "
                  + ", ".join(f"{k} = {_number(float(v.sel(bound='value')), 4)} "
                              f"[{_number(float(v.sel(bound='lo')), 3)}, {_number(float(v.sel(bound='hi')), 3)}]"
                              for k, v in zip(SATURATING_PARAMETERS, (a, d, b)))
                  + f" ({level} intervals; {int(info.sel(sat_info='n_points'))} points, "
                    f"{int(info.sel(sat_info='n_excluded'))} excluded, R² on log R {_number(float(info.sel(sat_info='r2')))})."]
    else:
        lines.append("Saturating return vs loss: not fitted (fewer than 4 usable points or no convergence).")
    if shift:
        lines.append(f"Returns were shifted by +{shift:g} before log fits (negative_returns = shift).")
    par = fits["parametric"].sel(game=game)
    if np.isfinite(par.sel(bound="value")).all():
        lines += ["", f"Parametric fit L(N, D) = E + A/N^alpha + B/D^beta ({fits['parametric_note'].sel(game=game).item()}; "
                      f"{level} bootstrap intervals):", "",
                  "| " + " | ".join(fits["pparam"].values) + " |", "|---" * len(fits["pparam"]) + "|",
                  "| " + " | ".join(f"{_number(float(p.sel(bound='value')), 4)} [{_number(float(p.sel(bound='lo')))}, "
                                    f"{_number(float(p.sel(bound='hi')))}]" for p in par.transpose("pparam", ...)) + " |"]
    else:
        lines += ["", f"Parametric fit: {fits['parametric_note'].sel(game=game).item()}."]
    budget = float(fits["forecast_budget"].sel(game=game))
    lines += ["", f"Forecast at C* = {budget_label(budget)} FLOPs (value [{level} prediction interval]; parametric N*, D* "
                  f"carry confidence intervals):", "", "| method | N* | D* | L | R |", "|---|---|---|---|---|"]
    for method in METHODS:
        cells = []
        for target in TARGETS:
            v = fits["forecast"].sel({"game": game, "method": method, "target": target})
            value, lo, hi = (float(v.sel(bound=k)) for k in BOUNDS)
            cells.append("–" if not np.isfinite(value) else f"{_number(value)} [{_number(lo)}, {_number(hi)}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for method in FLOOR_METHODS:
        row = fits["floor_forecast"].sel(game=game, floor_method=method)
        if np.isfinite(float(row.sel(bound="value"))):
            lines.append(f"| {method}, E + A C^b | – | – | {_triple_text(row, 3)} | – |")
    return lines


def _loss_metric_line(fits: xr.Dataset, game: str, config: FitConfig) -> str:
    """Which loss L is in every loss law, L_min and R(L) of the game, and why when it is not the requested one."""
    metric = fitted_loss_metric(fits, game)
    what = {"cross_entropy": "held-out cross entropy on the recorded actions",
            "kl": "held-out KL(π_expert ‖ π_BC) against the expert's recorded action distribution"}[metric]
    line = f"Loss fitted (L in every loss law, L_min and return vs loss): **{LOSS_METRIC_TEXT[metric]}**, the {what}."
    if metric != config.loss_metric:
        line += (f" (fit.loss_metric = {config.loss_metric}, but this game has no finite {config.loss_metric} "
                 "values: it has no expert distribution, as NetHack and published results.)")
    return line


def summary_markdown(fits: xr.Dataset) -> str:
    """A table per game: each law's exponent by method with intervals, checks, flags, parametric fit and forecast."""
    config = FitConfig.from_attrs(fits.attrs)
    level = f"{100 * config.confidence:g}%"
    settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())
    lines = ["# Scaling-law fits", "", f"Settings: {settings}.", "",
             "Methods: raw = best evaluated size per budget (the authors' plots); vertex = vertex of a parabola "
             "in log10 N (raw point at an edge); parametric = L(N, D) surface. CV = one-step-ahead over budgets, "
             "errors in log10 units for power laws; holdout = refit without the largest "
             f"{config.holdout_budgets} budget(s).", ""]
    for game in fits["game"].values:
        lines += [f"## {game}", "", _loss_metric_line(fits, str(game), config), ""]
        lines += _law_table(fits, game, level) + _floor_table(fits, game, level) + [""]
        for metric in METRICS:
            status = fits["status"].sel(game=game, metric=metric)
            flagged = [f"{budget_label(c)} ({s})" for c, s in zip(fits["flops"].values, status.values)
                       if str(s).startswith(("edge", "skipped"))]
            raw_edge = [budget_label(c) for c, e in zip(fits["flops"].values,
                                                       fits["raw_edge"].sel(game=game, metric=metric).values) if e]
            lines.append(f"- {metric} profiles, vertex method, flagged or skipped budgets: "
                         f"{', '.join(flagged) if flagged else 'none'}")
            lines.append(f"- {metric} profiles, raw optimum at an edge of the evaluated sizes: "
                         f"{', '.join(raw_edge) if raw_edge else 'none'} "
                         f"({'excluded from' if config.exclude_edge_budgets else 'kept in'} the power laws)")
        lines += _extra_tables(fits, game, level) + [""]
    return "\n".join(lines)
