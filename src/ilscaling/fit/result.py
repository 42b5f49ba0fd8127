"""One game's fits, typed (GameFit), and the function that makes them (fit_game): per-budget optima
by the raw and vertex methods, the laws across budgets with their checks, the saturating loss law,
return vs loss, the L(N, D) surface, and the forecast at C*."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ilscaling.fit.config import (BOUNDS, FIT_SETS, FLOOR_METHODS, LAW_QUANTITIES, LOSS_BUDGET_VARIABLES, METHODS,
                                  METRICS, NOT_FITTED, POWER_LAW, RETURN_BUDGET_VARIABLES, TARGETS, FitConfig)
from ilscaling.fit.floor import CheckedFloorLaw, floor_law_with_checks
from ilscaling.fit.laws import law_with_checks, return_points, return_shift
from ilscaling.fit.parametric import SurfaceResult, fit_surface, surface_law
from ilscaling.fit.profiles import fit_budget, raw_optima
from ilscaling.fit.stats import LineFit, SaturatingFit, fit_line, fit_saturating

NO_LOSS = "not fitted: no loss values for this game"


@dataclass(frozen=True)
class GameFit:
    """Everything fitted for one game; `fit.store` packs these into fits.nc."""

    values: dict[str, dict[str, np.ndarray]]  # method (raw, vertex) -> per-budget variable -> (flops,)
    flags: dict[str, dict[str, dict[str, np.ndarray]]]  # method -> metric -> edge, used_in_fit, ... -> (flops,)
    laws: dict[tuple[str, str], dict[str, LineFit | None]]  # (method, fit_set) -> quantity -> fitted line
    forms: dict[tuple[str, str], dict[str, str]]  # (method, fit_set) -> quantity -> law form
    notes: dict[tuple[str, str], dict[str, str]]  # (method, fit_set) -> quantity -> how it was fitted
    checks: dict[str, dict[str, dict[str, float]]]  # method -> quantity -> cv_* and holdout_* statistics
    held_out: dict[str, dict[str, np.ndarray]]  # method -> metric -> budgets the holdout refit left out
    saturating: SaturatingFit | None  # return vs loss, saturating form
    shift: float  # added to returns before log fits
    surface: SurfaceResult  # L(N, D)
    surface_laws: dict[str, dict[str, float]]  # n_opt, d_opt, l_min -> LAW_STATS of the surface's optima
    forecast: np.ndarray  # (method, target, bound) at forecast_budget
    forecast_budget: float  # C*
    floor: dict[str, CheckedFloorLaw]  # floor method -> saturating loss law


def _method_series(values: dict, flags: dict, method: str) -> dict:
    """Per-budget targets of one method and which budgets enter its power laws."""
    return {"values": {q: values[method][q] for q in TARGETS},
            "used": {"loss": flags[method]["loss"]["used_in_fit"], "return": flags[method]["return"]["used_in_fit"]}}


def fit_game(game: str, means: xr.Dataset, config: FitConfig) -> GameFit:
    """Per-budget optima (raw and vertex), power laws with checks, return vs loss, parametric fit, forecast."""
    budgets = means["flops"].values.astype(float)
    per_budget = [fit_budget(means.sel(flops=c), config) for c in budgets]
    raw = [raw_optima(means.sel(flops=c)) for c in budgets]
    vertex_values = {name: np.array([b["values"][name] for b in per_budget])
                     for name in LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES}
    raw_values = {name: np.array([r["values"][name] for r in raw]) for name in raw[0]["values"]}
    values = {"vertex": vertex_values, "raw": raw_values}

    flags = {"vertex": {}, "raw": {}}
    for metric in METRICS:
        records = [b[metric] for b in per_budget]
        optimum_value = vertex_values["n_opt"] if metric == "loss" else vertex_values["r_max"]
        edge = np.array([r["edge"] for r in records])
        skipped = np.array([r["skipped"] for r in records])
        flags["vertex"][metric] = {
            "edge": edge, "skipped": skipped,
            "used_in_fit": ~skipped & np.isfinite(optimum_value) & ~(edge & config.exclude_edge_budgets),
            "status": np.array([r["status"] for r in records], dtype=object),
            "n_sizes": np.array([r["n_sizes"] for r in records]),
            "coef": np.stack([r["coef"] for r in records]),
            "log10n_min": np.array([r["log10n_min"] for r in records]),
            "log10n_max": np.array([r["log10n_max"] for r in records]),
        }
        raw_edge = np.array([r["edge"][metric] for r in raw])
        raw_value = raw_values["n_opt"] if metric == "loss" else raw_values["r_max"]
        flags["raw"][metric] = {"edge": raw_edge, "skipped": np.zeros(len(budgets), bool),
                                "used_in_fit": np.isfinite(raw_value) & ~(raw_edge & config.exclude_edge_budgets)}

    has_loss = bool(np.isfinite(means["loss"].values).any())
    shift = return_shift(means["return"].values, config.negative_returns)
    forecast_budget = config.forecast_budget_of(game, budgets[np.isfinite(means["loss"].values).any(axis=1)
                                                          | np.isfinite(means["return"].values).any(axis=1)].max())
    floor = {m: CheckedFloorLaw(NO_LOSS) for m in FLOOR_METHODS}
    laws = {(m, f): {} for m in METHODS for f in FIT_SETS}
    forms = {(m, f): dict.fromkeys(LAW_QUANTITIES, NOT_FITTED) for m in METHODS for f in FIT_SETS}
    notes = {(m, f): dict.fromkeys(LAW_QUANTITIES, "") for m in METHODS for f in FIT_SETS}
    checks = {m: {} for m in METHODS}
    held_out = {m: {metric: np.zeros(len(budgets), bool) for metric in METRICS} for m in METHODS}
    for method in ("raw", "vertex"):
        series = _method_series(values, flags, method)
        for quantity in TARGETS:
            metric = "return" if quantity == "r_max" else "loss"
            if metric == "loss" and not has_loss:
                notes[(method, "all")][quantity] = NO_LOSS
                continue
            keep = series["used"][metric] & np.isfinite(series["values"][quantity])
            y = series["values"][quantity][keep]
            log_y, note = True, f"{keep.sum()} budgets"
            if quantity == "r_max":
                y = y + shift
                if shift:
                    note += f"; R_max shifted by +{shift:g} (lowest return becomes 1)"
                elif not np.all(y > 0):
                    log_y, note = False, note + "; some R_max <= 0, so linear in log10 C"
            if keep.sum() < 2:
                # Not an error: the summary and figures still show every budget and why none is usable.
                edges = int((flags[method][metric]["edge"] & np.isfinite(series["values"][quantity])).sum())
                skipped = int(flags[method][metric]["skipped"].sum())
                why = (f"; {edges} budgets with the optimum at the grid's edge left out (exclude_edge_budgets)"
                       if config.exclude_edge_budgets and edges else "")
                why += f"; {skipped} budgets skipped (fewer sizes than min_sizes_per_budget)" if skipped else ""
                notes[(method, "all")][quantity] = (f"not fitted: {keep.sum()} budgets with a usable "
                                                    f"{'return' if metric == 'return' else 'loss'} optimum{why}")
                continue
            law = law_with_checks(game, quantity, budgets[keep], y, log_y=log_y, config=config)
            if quantity == "l_min":
                floor[method] = floor_law_with_checks(budgets[keep], y, forecast_budget, config)
            laws[(method, "all")][quantity] = law.fit
            checks[method][quantity] = law.checks
            forms[(method, "all")][quantity], notes[(method, "all")][quantity] = law.fit.form, note
            held_out[method][metric][np.flatnonzero(keep)[law.held]] = True
            if law.holdout is not None:
                laws[(method, "holdout")][quantity] = law.holdout
                forms[(method, "holdout")][quantity] = law.holdout.form
                notes[(method, "holdout")][quantity] = f"without the largest {config.holdout_budgets} budget(s)"

    # Return vs loss is one fit over every run, whatever the method.
    x, r, n_excluded, note = return_points(means["loss"].values, means["return"].values, shift)
    rvl = fit_line(x, r, n_excluded=n_excluded) if len(x) >= 2 else None
    if rvl is None:
        note = f"not fitted: {len(x)} usable (loss, return) points (need 2); {note}"
    saturating = fit_saturating(x, r, n_excluded=n_excluded, shift=shift, start=rvl) if rvl is not None else None
    for method in METHODS:
        laws[(method, "all")]["return_vs_loss"] = rvl
        forms[(method, "all")]["return_vs_loss"] = rvl.form if rvl else NOT_FITTED
        notes[(method, "all")]["return_vs_loss"] = note

    surface = fit_surface(means, budgets, forecast_budget, config) if has_loss else SurfaceResult(NO_LOSS)
    surface_laws = {}
    if surface.fit is not None:
        for quantity in ("n_opt", "d_opt", "l_min"):
            surface_laws[quantity] = surface_law(surface, budgets, quantity, raw_values["l_min"], config.confidence)
            forms[("parametric", "all")][quantity] = POWER_LAW
            notes[("parametric", "all")][quantity] = ("fitted line through N*(C), D*(C), L*(C) of the L(N, D) "
                                                      "surface over the game's budgets; " + surface.note)
    else:
        for quantity in ("n_opt", "d_opt", "l_min"):
            notes[("parametric", "all")][quantity] = surface.note

    forecast = _forecast(laws, surface, forecast_budget, shift, config)
    return GameFit(values, flags, laws, forms, notes, checks, held_out, saturating, shift, surface, surface_laws,
                   forecast, forecast_budget, floor)


def _forecast(laws, surface: SurfaceResult, budget: float, shift: float, config: FitConfig) -> np.ndarray:
    """(method, target, bound) at C*: value with its prediction interval (parametric N*, D*: confidence)."""
    out = np.full((len(METHODS), len(TARGETS), len(BOUNDS)), np.nan)
    for i, method in enumerate(("raw", "vertex")):
        for j, quantity in enumerate(TARGETS):
            fit = laws[(method, "all")].get(quantity)
            if fit is None:
                continue
            lo, hi = fit.prediction_band(budget, config.confidence)
            offset = shift if quantity == "r_max" else 0.0
            out[i, j] = np.array([fit.predict(budget), lo, hi], float).ravel() - offset
    if surface.fit is not None:
        k = METHODS.index("parametric")
        for j, quantity in enumerate(("n_opt", "d_opt", "l_min")):
            out[k, j] = surface.alloc[quantity][-1]
        if surface.l_forecast_pi is not None:
            out[k, 2, 1:] = surface.l_forecast_pi
        # Return at the predicted loss through the return-vs-loss power law; its interval spans the
        # law's prediction band at both ends of the loss interval.
        rvl = laws[("parametric", "all")].get("return_vs_loss")
        if rvl is not None:
            losses = out[k, 2]
            centre = float(rvl.predict(1.0 / losses[0])) - shift
            ends = [b for loss in losses[1:] if np.isfinite(loss) for b in rvl.prediction_band(1.0 / loss, config.confidence)]
            ends += list(rvl.prediction_band(1.0 / losses[0], config.confidence))
            out[k, 3] = [centre, np.nanmin(ends) - shift, np.nanmax(ends) - shift]
    return out
