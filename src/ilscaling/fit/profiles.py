"""isoFLOP profiles, one compute budget at a time (Tuyls et al. 2023, section 3).

For every budget the profile over model sizes is fitted by a quadratic in x = log10 N: log10(loss)
for the loss, the raw return for the return (returns can be zero or negative, so no log). The
vertex gives N_opt and L_min (resp. R_max), with delta-method intervals from the OLS covariance.
A parabola that opens the wrong way, or whose vertex lies outside the evaluated sizes, is flagged
`edge` and the raw best point is used instead, without an interval. D_opt is the number of
samples at N_opt, by log-log interpolation of that budget's samples-vs-params table. The raw
method (the authors' plotting code) takes the best evaluated size per budget instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ilscaling.fit.config import LOSS_BUDGET_VARIABLES, RETURN_BUDGET_VARIABLES, FitConfig
from ilscaling.fit.stats import QuadraticFit, fit_quadratic


@dataclass(frozen=True)
class ProfileOptimum:
    """Best point of one isoFLOP profile: x = log10 N, y = the profile's response."""

    x: float
    x_lo: float
    x_hi: float
    y: float
    y_lo: float
    y_hi: float
    edge: bool
    status: str
    fit: QuadraticFit


def profile_optimum(log_params, response, *, maximize: bool, confidence: float) -> ProfileOptimum:
    """Vertex of the quadratic through an isoFLOP profile, or its raw best point at an edge.

    The raw point is used when the parabola opens the wrong way or its vertex lies outside
    the evaluated sizes: extrapolating a parabola there would invent an optimum the grid
    never saw.
    """
    x, y = np.asarray(log_params, float), np.asarray(response, float)
    fit = fit_quadratic(x, y)
    curvature = fit.coef[0]
    shape = "concave" if maximize else "convex"
    if not (curvature < 0 if maximize else curvature > 0):
        reason = f"parabola not {shape}"
    elif not x.min() <= fit.vertex <= x.max():
        reason = "vertex outside the evaluated sizes"
    else:
        (x_lo, x_hi), (y_lo, y_hi) = fit.vertex_intervals(confidence)
        status = "vertex" if fit.dof > 0 else "vertex (exact fit through 3 sizes: no interval)"
        return ProfileOptimum(fit.vertex, x_lo, x_hi, fit.vertex_value(), y_lo, y_hi, False, status, fit)
    best = int(np.argmax(y) if maximize else np.argmin(y))
    raw = "argmax" if maximize else "argmin"
    return ProfileOptimum(x[best], np.nan, np.nan, y[best], np.nan, np.nan, True,
                          f"edge: {reason}; raw {raw} used, no interval", fit)


def interpolate_loglog(x_query, x_table, y_table) -> np.ndarray:
    """y at x_query by piecewise-linear interpolation in log10-log10 space.

    Outside the table the end segments are extended, since samples ~ C/(6N) is itself a
    straight line in log-log space. NaN rows are ignored; fewer than 2 rows give NaN.
    """
    x_table, y_table = np.asarray(x_table, float), np.asarray(y_table, float)
    keep = np.isfinite(x_table) & np.isfinite(y_table) & (x_table > 0) & (y_table > 0)
    x_query = np.asarray(x_query, float)
    if keep.sum() < 2:
        return np.full_like(x_query, np.nan)
    order = np.argsort(x_table[keep])
    log_x, log_y = np.log10(x_table[keep][order]), np.log10(y_table[keep][order])
    log_q = np.log10(x_query)
    inside = np.interp(log_q, log_x, log_y)
    below = log_y[0] + (log_q - log_x[0]) * (log_y[1] - log_y[0]) / (log_x[1] - log_x[0])
    above = log_y[-1] + (log_q - log_x[-1]) * (log_y[-1] - log_y[-2]) / (log_x[-1] - log_x[-2])
    return 10.0 ** np.where(log_q < log_x[0], below, np.where(log_q > log_x[-1], above, inside))


def seed_means(results: xr.Dataset) -> xr.Dataset:
    """Mean over seeds, ignoring NaN (a combination never run stays NaN).

    Where the results carry `return_weight` (published data whose authors combined seed files
    by a running mean, see `ilscaling.published`), returns are averaged with those weights.
    """
    weights = results["return_weight"] if "return_weight" in results else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices are expected
        means = results.drop_vars("return_weight", errors="ignore").mean("seed", skipna=True, keep_attrs=True)
    if weights is not None and "return" in results:
        valid = results["return"].notnull() & weights.notnull()
        total = weights.where(valid).sum("seed")
        weighted = (results["return"] * weights).where(valid).sum("seed") / total
        means["return"] = weighted.where(total > 0, means["return"])
    return means


def _fit_profile(log_params, response, *, maximize: bool, config: FitConfig) -> dict:
    """One metric of one budget: optimum, flags, coefficients; skipped below min sizes."""
    finite = np.isfinite(response)
    x, y = log_params[finite], response[finite]
    record = {"n_sizes": int(finite.sum()), "coef": np.full(3, np.nan),
              "log10n_min": np.nan, "log10n_max": np.nan, "edge": False, "skipped": False}
    if len(x) == 0:
        record.update(skipped=True, status="no data")
        return record
    record.update(log10n_min=x.min(), log10n_max=x.max())
    if len(x) < config.min_sizes_per_budget:
        record.update(skipped=True, status=f"skipped: {len(x)} sizes < min_sizes_per_budget="
                                           f"{config.min_sizes_per_budget}")
        return record
    window_note = ""
    if config.vertex_window_dex > 0:
        # Far from the optimum a parabola in log N is a poor shape; fit only the sizes near it.
        best = x[np.argmax(y) if maximize else np.argmin(y)]
        near = np.abs(x - best) <= config.vertex_window_dex + 1e-9
        window_note = f"; window ±{config.vertex_window_dex:g} dex: {int(near.sum())} of {len(x)} sizes"
        if near.sum() < 3:
            record.update(skipped=True, status=f"skipped: {int(near.sum())} sizes within the vertex window "
                                               f"(±{config.vertex_window_dex:g} dex) < 3")
            return record
        x, y = x[near], y[near]
        record.update(log10n_min=x.min(), log10n_max=x.max())
    optimum = profile_optimum(x, y, maximize=maximize, confidence=config.confidence)
    record.update(optimum=optimum, coef=optimum.fit.coef, edge=optimum.edge, status=optimum.status + window_note)
    return record


def fit_budget(budget: xr.Dataset, config: FitConfig) -> dict:
    """isoFLOP fits of one seed-averaged budget (dim params): loss and return profiles.

    Returns {"loss": record, "return": record, "values": {variable: float}}.
    """
    params = budget["params"].values.astype(float)
    log_params = np.log10(params)
    loss = budget["loss"].values.astype(float)
    loss_record = _fit_profile(log_params, np.log10(loss), maximize=False, config=config)
    return_record = _fit_profile(log_params, budget["return"].values.astype(float), maximize=True, config=config)

    values = dict.fromkeys(LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES, np.nan)
    if "optimum" in loss_record:
        best = loss_record["optimum"]
        values.update(n_opt=10**best.x, n_opt_lo=10**best.x_lo, n_opt_hi=10**best.x_hi,
                      l_min=10**best.y, l_min_lo=10**best.y_lo, l_min_hi=10**best.y_hi)
        samples = budget["samples"].values.astype(float)
        d_opt, d_a, d_b = interpolate_loglog([values["n_opt"], values["n_opt_lo"], values["n_opt_hi"]],
                                             params, samples)
        # Samples fall with N at fixed compute, so the interval's ends swap.
        values.update(d_opt=d_opt, d_opt_lo=np.fmin(d_a, d_b), d_opt_hi=np.fmax(d_a, d_b))
    if "optimum" in return_record:
        best = return_record["optimum"]
        values.update(r_max=best.y, r_max_lo=best.y_lo, r_max_hi=best.y_hi, n_opt_return=10**best.x,
                      n_opt_return_lo=10**best.x_lo, n_opt_return_hi=10**best.x_hi)
    return {"loss": loss_record, "return": return_record, "values": values}


def raw_optima(budget: xr.Dataset) -> dict:
    """argmin loss / argmax return among the evaluated sizes of one seed-averaged budget.

    D at the raw optimum is the samples of that very run. A budget whose best size is the
    smallest or largest evaluated one (or that has a single size) is flagged `edge`.
    """
    params = budget["params"].values.astype(float)
    out = {"values": dict.fromkeys(("n_opt", "d_opt", "l_min", "r_max", "n_opt_return"), np.nan),
           "edge": {}, "n_sizes": {}}
    for metric, pick, target in (("loss", np.argmin, "l_min"), ("return", np.argmax, "r_max")):
        response = budget[metric].values.astype(float)
        finite = np.flatnonzero(np.isfinite(response))
        out["n_sizes"][metric] = len(finite)
        if len(finite) == 0:
            out["edge"][metric] = False
            continue
        best = finite[pick(response[finite])]
        out["edge"][metric] = bool(params[best] in (params[finite].min(), params[finite].max()))
        out["values"][target] = response[best]
        if metric == "loss":
            out["values"]["n_opt"] = params[best]
            out["values"]["d_opt"] = float(budget["samples"].values[best])
        else:
            out["values"]["n_opt_return"] = params[best]
    return out
