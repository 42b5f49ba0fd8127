"""fits.nc: every GameFit packed into one xarray Dataset (`fit_results`), and read back from it
(`law_fit`, `saturating_fit`, `stored_quadratic`, the loss metric per game) so that figures, the
summary and the forecast show exactly what was fitted, without refitting."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ilscaling.fit.config import (BOUNDS, FIT_SETS, FLOOR_INFO, FLOOR_METHODS, LAW_QUANTITIES, LAW_STATS,
                                  LINEAR_IN_LOG10_X, LOSS_BUDGET_VARIABLES, LOSS_METRICS, METHODS,
                                  METRICS, NOT_FITTED, POWER_LAW, QUADRATIC_POWERS, RETURN_BUDGET_VARIABLES,
                                  TARGETS, FitConfig)
from ilscaling.fit.parametric import PARAMETER_NAMES
from ilscaling.fit.profiles import seed_means
from ilscaling.fit.result import fit_game
from ilscaling.fit.stats import SATURATING_INFO, SATURATING_PARAMETERS, LineFit, SaturatingFit
from ilscaling.results_file import LOSS_METRIC_TEXT, REQUIRED_VARIABLES, validate_results


def loss_metric_of(results: xr.Dataset, game: str, requested: str) -> str:
    """The loss metric fitted for `game`: `requested`, or cross_entropy where the game has no finite
    value of it (NetHack and published sets have no expert distribution, so no KL)."""
    variable = LOSS_METRICS[requested]
    if variable in results and np.isfinite(results[variable].sel(game=game).values).any():
        return requested
    return "cross_entropy"


def select_loss_metric(results: xr.Dataset, metrics: dict[str, str]) -> xr.Dataset:
    """`results` whose `loss` holds, game by game, the metric named in `metrics` (game -> loss metric)."""
    loss = results["loss"].copy()
    for game, metric in metrics.items():
        if metric != "cross_entropy":
            loss.loc[{"game": game}] = results[LOSS_METRICS[metric]].sel(game=game)
    return results.assign(loss=loss)


def fitted_loss_metric(fits: xr.Dataset, game: str) -> str:
    """The loss metric a fits Dataset fitted for `game`."""
    return str(fits["loss_metric"].sel(game=game).item())


def fitted_results(results: xr.Dataset, fits: xr.Dataset) -> xr.Dataset:
    """`results` whose `loss` is, game by game, the metric that `fits` fitted (what figures must show)."""
    games = [str(g) for g in fits["game"].values if g in results["game"].values]
    return select_loss_metric(results, {g: fitted_loss_metric(fits, g) for g in games})


def loss_axis_label(metric: str, symbol: str = "") -> str:
    """An axis label naming the loss metric, e.g. "held-out loss L (KL(expert ‖ BC))"."""
    return f"held-out loss{' ' + symbol if symbol else ''} ({LOSS_METRIC_TEXT[metric]})"


def _law_row(fit: LineFit, checks: dict | None, confidence: float) -> np.ndarray:
    """LAW_STATS of one fitted line and its cross-validation and holdout checks, NaN where absent."""
    row = dict.fromkeys(LAW_STATS, np.nan)
    row.update(fit.to_stats(confidence))
    row.update(checks or {})
    return np.array([row[s] for s in LAW_STATS], float)


def fit_results(results: xr.Dataset, config: FitConfig = FitConfig()) -> xr.Dataset:
    """Every fit of every game, in one Dataset.

    Variables:
      (game, flops): LOSS_BUDGET_VARIABLES, RETURN_BUDGET_VARIABLES of the vertex method
        (an edge budget falls back to its raw best point), and raw_n_opt, raw_d_opt, raw_l_min,
        raw_r_max, raw_n_opt_return of the raw method (NaN = not available).
      (game, flops, metric): edge, skipped, used_in_fit (bool), status (str), n_sizes,
        quad_log10n_min / quad_log10n_max (the fitted range of log10 N) of the vertex method;
        raw_edge, raw_used_in_fit of the raw method; held_out (game, method, flops, metric).
      (game, flops, metric, power): quad_coef, the parabola in x = log10 N of log10(loss)
        (metric loss) or return (metric return).
      (game, method, fit_set, quantity, stat): laws, the LAW_STATS of each law by method (raw,
        vertex, parametric) fitted on all budgets or without the held-out ones; law_forms and
        law_notes (game, method, fit_set, quantity). `law`, `law_form`, `law_note` are the
        vertex method on all budgets, as before.
      saturating (game, sat_param, bound), saturating_cov, saturating_info: R = 1/(a (1/L)^d + b).
      return_shift (game): added to returns before log fits (0 unless negative_returns='shift').
      parametric (game, pparam, bound): E, A, B, alpha, beta with bootstrap percentile intervals;
        parametric_info (game, pinfo); parametric_opt (game, flops, target, bound): N*, D*, L*.
      forecast (game, method, target, bound) at forecast_budget (game).
      floor_law (game, floor_method, floor_param, bound): E, A, b of L_min(C) = E + A C^b by the raw and
        vertex optima, with bootstrap percentile intervals; floor_info (game, floor_method, floor_stat):
        FLOOR_INFO (points, Huber objective, resamples drawn and usable, one-step-ahead CV and holdout
        errors in log10 L, comparable with the pure law's); floor_forecast (game, floor_method, bound):
        L_min at forecast_budget with its prediction interval; floor_note (game, floor_method).
      loss_metric (game): the loss fitted as "loss" everywhere above (config.loss_metric, or
        cross_entropy for a game without a finite value of it); the return-vs-loss law uses it too.
    The FitConfig is in the attrs (see FitConfig.from_attrs).
    """
    validate_results(results)  # the structure, and the cross entropy
    loss_metrics = {str(g): loss_metric_of(results, str(g), config.loss_metric) for g in results["game"].values}
    results = select_loss_metric(results, loss_metrics)
    validate_results(results, loss_metrics)  # the loss that is fitted
    keep = list(REQUIRED_VARIABLES) + (["return_weight"] if "return_weight" in results else [])
    means = seed_means(results[keep])
    games = [str(g) for g in results["game"].values]
    per_game = [fit_game(g, means.sel(game=g), config) for g in games]
    budget_dims, flag_dims = ("game", "flops"), ("game", "flops", "metric")
    n_flops = results.sizes["flops"]

    data = {}
    for name in LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES:
        data[name] = (budget_dims, np.stack([f.values["vertex"][name] for f in per_game]))
    for name in ("n_opt", "d_opt", "l_min", "r_max", "n_opt_return"):
        data[f"raw_{name}"] = (budget_dims, np.stack([f.values["raw"][name] for f in per_game]))
    for name in ("edge", "skipped", "used_in_fit", "status", "n_sizes", "log10n_min", "log10n_max"):
        stacked = np.stack([np.stack([f.flags["vertex"][m][name] for m in METRICS], axis=-1) for f in per_game])
        target = {"log10n_min": "quad_log10n_min", "log10n_max": "quad_log10n_max"}.get(name, name)
        data[target] = (flag_dims, stacked.astype(str) if name == "status" else stacked)
    for name in ("edge", "used_in_fit"):
        data[f"raw_{name}"] = (flag_dims, np.stack([np.stack([f.flags["raw"][m][name] for m in METRICS], axis=-1)
                                                    for f in per_game]))
    data["held_out"] = (("game", "method", "flops", "metric"),
                        np.stack([np.stack([np.stack([f.held_out[m][metric] for metric in METRICS], axis=-1)
                                            for m in METHODS]) for f in per_game]))
    data["quad_coef"] = (flag_dims + ("power",),
                         np.stack([np.stack([f.flags["vertex"][m]["coef"] for m in METRICS], axis=1)
                                   for f in per_game]))

    laws = np.full((len(games), len(METHODS), len(FIT_SETS), len(LAW_QUANTITIES), len(LAW_STATS)), np.nan)
    forms = np.full(laws.shape[:-1], NOT_FITTED, dtype=object)
    notes = np.full(laws.shape[:-1], "", dtype=object)
    for i, f in enumerate(per_game):
        for a, method in enumerate(METHODS):
            for b, fit_set in enumerate(FIT_SETS):
                for c, quantity in enumerate(LAW_QUANTITIES):
                    forms[i, a, b, c] = f.forms[(method, fit_set)][quantity]
                    notes[i, a, b, c] = f.notes[(method, fit_set)][quantity]
                    if method == "parametric" and fit_set == "all" and quantity in f.surface_laws:
                        laws[i, a, b, c] = [f.surface_laws[quantity][s] for s in LAW_STATS]
                        continue
                    fit = f.laws[(method, fit_set)].get(quantity)
                    checks = f.checks[method].get(quantity) if fit_set == "all" else None
                    if fit is not None:
                        laws[i, a, b, c] = _law_row(fit, checks, config.confidence)
    law_dims = ("game", "method", "fit_set", "quantity")
    data["laws"] = (law_dims + ("stat",), laws)
    data["law_forms"] = (law_dims, forms.astype(str))
    data["law_notes"] = (law_dims, notes.astype(str))
    vertex = METHODS.index("vertex")
    data["law"] = (("game", "quantity", "stat"), laws[:, vertex, 0])
    data["law_form"] = (("game", "quantity"), forms[:, vertex, 0].astype(str))
    data["law_note"] = (("game", "quantity"), notes[:, vertex, 0].astype(str))

    saturating = np.full((len(games), 3, 3), np.nan)
    saturating_cov = np.full((len(games), 3, 3), np.nan)
    saturating_info = np.full((len(games), len(SATURATING_INFO)), np.nan)
    for i, f in enumerate(per_game):
        fit = f.saturating
        if fit is not None:
            saturating[i] = fit.intervals(config.confidence)
            saturating_cov[i] = fit.covariance
            saturating_info[i] = [fit.residual_variance, fit.dof, fit.n_points, fit.n_excluded, fit.r2, fit.shift]
    data["saturating"] = (("game", "sat_param", "bound"), saturating)
    data["saturating_cov"] = (("game", "sat_param", "sat_param2"), saturating_cov)
    data["saturating_info"] = (("game", "sat_info"), saturating_info)
    data["return_shift"] = ("game", np.array([f.shift for f in per_game]))

    parametric = np.full((len(games), len(PARAMETER_NAMES), 3), np.nan)
    parametric_info = np.full((len(games), 4), np.nan)
    parametric_opt = np.full((len(games), n_flops, 3, 3), np.nan)
    for i, f in enumerate(per_game):
        fit = f.surface.fit
        if fit is None:
            continue
        parametric[i, :, 0] = list(fit.parameters.values())
        parametric[i, :, 1:] = fit.parameter_intervals(config.confidence)
        parametric_info[i] = [fit.n_points, len(fit.bootstrap), fit.objective, float(np.std(fit.log_residuals, ddof=1))]
        for j, key in enumerate(("n_opt", "d_opt", "l_min")):
            parametric_opt[i, :, j] = f.surface.alloc[key][:-1]
    data["parametric"] = (("game", "pparam", "bound"), parametric)
    data["parametric_info"] = (("game", "pinfo"), parametric_info)
    data["parametric_opt"] = (("game", "flops", "ptarget", "bound"), parametric_opt)
    data["parametric_note"] = ("game", np.array([f.surface.note for f in per_game], str))
    data["forecast"] = (("game", "method", "target", "bound"), np.stack([f.forecast for f in per_game]))
    floor_dims = ("game", "floor_method")
    data["floor_law"] = (floor_dims + ("floor_param", "bound"),
                         np.array([[f.floor[m].table for m in FLOOR_METHODS] for f in per_game]))
    data["floor_info"] = (floor_dims + ("floor_stat",),
                          np.array([[[f.floor[m].info[k] for k in FLOOR_INFO] for m in FLOOR_METHODS]
                                    for f in per_game], float))
    data["floor_forecast"] = (floor_dims + ("bound",),
                              np.array([[f.floor[m].forecast for m in FLOOR_METHODS] for f in per_game]))
    data["floor_note"] = (floor_dims, np.array([[f.floor[m].note for m in FLOOR_METHODS] for f in per_game], str))
    data["forecast_budget"] = ("game", np.array([f.forecast_budget for f in per_game]))
    data["loss_metric"] = ("game", np.array([loss_metrics[g] for g in games], str))

    fits = xr.Dataset(data, coords={
        "game": games, "flops": results["flops"].values.astype(float), "metric": list(METRICS),
        "power": list(QUADRATIC_POWERS), "quantity": list(LAW_QUANTITIES), "stat": list(LAW_STATS),
        "method": list(METHODS), "fit_set": list(FIT_SETS), "target": list(TARGETS), "bound": list(BOUNDS),
        "sat_param": list(SATURATING_PARAMETERS), "sat_param2": list(SATURATING_PARAMETERS),
        "sat_info": list(SATURATING_INFO), "pparam": list(PARAMETER_NAMES),
        "pinfo": ["n_points", "n_bootstrap", "huber_objective", "log_residual_sd"],
        "ptarget": ["n_opt", "d_opt", "l_min"], "floor_method": list(FLOOR_METHODS),
        "floor_param": ["E", "A", "b"], "floor_stat": list(FLOOR_INFO)})
    fits.attrs.update(config.to_attrs())
    fits.attrs.update(  # the description's module name is pinned by tests/golden/smoke.json
        description="isoFLOP profiles, power laws and parametric fits of a BC scaling sweep (ilscaling.fit)",
        quad_coef="parabola in x=log10(params): log10(loss) for metric=loss, return for metric=return",
        law=(f"'{POWER_LAW}': log10 y = intercept + slope*log10 x (y = 10**intercept * x**slope); "
             f"'{LINEAR_IN_LOG10_X}': y = intercept + slope*log10 x; x = FLOPs, except "
             f"return_vs_loss where x = 1/loss and y = return (+ return_shift); r_max is fitted on "
             f"R_max + return_shift"),
        methods="raw: best evaluated size per budget; vertex: vertex of the parabola in log10 N (raw "
                "point at an edge); parametric: L(N, D) = E + A/N^alpha + B/D^beta, Huber on log loss",
        saturating="R + return_shift = 1 / (a * (1/L)**d + b), least squares on log R; bounds lo/hi "
                   "are t intervals from the covariance",
        forecast="value and prediction interval at forecast_budget; parametric N*, D*: bootstrap confidence "
                 "interval; parametric L: bootstrap with resampled residuals; parametric R: return-vs-loss "
                 "law at the predicted loss",
        floor_law="saturating loss law L_min(C) = E + A * C**b (C in FLOPs) through the per-budget L_min of "
                  "each floor_method (the budgets of the pure l_min law); Huber (delta 1e-3) on log L from a grid "
                  "of starts; lo/hi: percentiles of a residual bootstrap (bootstrap resamples, bootstrap_seed; "
                  "floor_info n_bootstrap_usable counts the usable ones); floor_info cv_rmse / holdout_* are in "
                  "log10 L on the same folds as the pure law's (laws, quantity l_min); floor_forecast: L_min at "
                  "forecast_budget with its prediction interval (bootstrap curve times a resampled residual)",
    )
    fits["n_opt"].attrs.update(long_name="loss-optimal parameters N_opt")
    fits["d_opt"].attrs.update(long_name="training samples at N_opt (D_opt)")
    fits["l_min"].attrs.update(long_name="minimum held-out loss L_min (the game's loss_metric)")
    fits["loss_metric"].attrs.update(long_name="loss fitted: cross_entropy (on the recorded actions) or kl "
                                               "(KL(expert policy || BC policy)); fit.loss_metric, or cross_entropy "
                                               "where the game has no finite value of it")
    fits["r_max"].attrs.update(long_name="maximum return R_max")
    fits["n_opt_return"].attrs.update(long_name="return-optimal parameters")
    return fits


def law_fit(fits: xr.Dataset, game: str, quantity: str, method: str = "vertex", fit_set: str = "all") -> LineFit | None:
    """The stored fit of one power law (None if it was not fitted), ready for bands."""
    where = {"game": game, "quantity": quantity, "method": method, "fit_set": fit_set}
    form, row = str(fits["law_forms"].sel(where).item()), fits["laws"].sel(where)
    if form == NOT_FITTED:
        return None
    stats = {s: float(row.sel(stat=s)) for s in LAW_STATS}
    if not (np.isfinite(stats["var_slope"]) or np.isfinite(stats["residual_variance"]) or np.isfinite(stats["dof"])):
        return None  # a line through model optima (parametric) has no OLS statistics to rebuild
    return LineFit.from_stats(stats, form)


def saturating_fit(fits: xr.Dataset, game: str) -> SaturatingFit | None:
    """The stored saturating return-vs-loss fit of a game, or None."""
    coef = fits["saturating"].sel(game=game, bound="value").values
    if not np.all(np.isfinite(coef)):
        return None
    info = {k: float(fits["saturating_info"].sel(game=game, sat_info=k)) for k in SATURATING_INFO}
    return SaturatingFit(coef, fits["saturating_cov"].sel(game=game).values, info["residual_variance"],
                         int(info["dof"]), int(info["n_points"]), int(info["n_excluded"]), info["r2"], info["shift"])


def stored_quadratic(fits: xr.Dataset, game: str, flops: float, metric: str) -> np.ndarray:
    """Stored (a, b, c) of one isoFLOP parabola (NaN if the budget was not fitted)."""
    return fits["quad_coef"].sel(game=game, flops=flops, metric=metric).values
