"""Parametric loss surface L(N, D) = E + A / N**alpha + B / D**beta (Hoffmann et al. 2022, approach 3).

The fit minimises the Huber loss (delta 1e-3) between log L(N, D) and the observed log loss,
with L written as a log-sum-exp of e, a - alpha log N, b - beta log D (E = exp e, A = exp a,
B = exp b) so that every start is valid. L-BFGS-B runs from the best points of a grid of
starts: the grid is screened by one vectorised evaluation, the `n_starts` best are refined
together (batched IRLS, below), and the best is polished by L-BFGS-B (kept if lower). On
near-L1 objectives L-BFGS alone from each start is slow (~0.5 s) and was seen to stop in
worse local minima from 2 of 8 starts, which the batched refinement does not.

Uncertainty is a bootstrap over runs: each resample is a multinomial weight vector over the
(budget, size) runs, which is the same as resampling rows with replacement; every resample
is refitted from the full-data optimum. With delta = 1e-3 the objective is nearly an L1 loss,
on which L-BFGS needs ~100 ms per fit; the resamples are therefore refitted all at once by
iteratively reweighted least squares (the standard Huber algorithm: weight min(1, delta/|r|))
with Levenberg-Marquardt Gauss-Newton steps, batched over resamples as (n, 5, 5) solves. It
minimises the same objective (checked against L-BFGS in the tests) in a fraction of a second.

The compute-optimal allocation uses the project's FLOP accounting, C = f(N) * D, where f(N)
are the training FLOPs per sample of a model with N parameters. f comes from the results
themselves (nominal budget / samples of each run, interpolated in log-log space), which works
for the published tables as well as for our own runs and, for the width-scaled Atari CNN, is
not 6N.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize

from ilscaling.fit.config import LAW_STATS, FitConfig
from ilscaling.fit.stats import HUBER_DELTA, huber, huber_irls, logsumexp

PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta")
# Grid of starts over (e, a, b, alpha, beta); E = exp(e) etc. Wider than Chinchilla's in e because
# BC cross entropies can reach 0.05.
START_GRID = (np.linspace(-4.0, 1.0, 6), np.arange(0.0, 26.0, 5.0), np.arange(0.0, 26.0, 5.0),
              np.array([0.1, 0.25, 0.5, 0.8, 1.2, 2.0]), np.array([0.1, 0.25, 0.5, 0.8, 1.2, 2.0]))
BOUNDS = [(-20.0, 10.0), (-20.0, 60.0), (-20.0, 60.0), (1e-3, 5.0), (1e-3, 5.0)]
N_GRID = 400  # points of log N searched per budget for the compute-optimal size


def log_predict(theta, log_n, log_d) -> np.ndarray:
    """log L(N, D) for theta = (e, a, b, alpha, beta); broadcasts over leading dims of theta."""
    e, a, b, alpha, beta = np.moveaxis(np.asarray(theta, float), -1, 0)
    terms = np.stack(np.broadcast_arrays(e[..., None] * np.ones_like(log_n),
                                         a[..., None] - alpha[..., None] * log_n,
                                         b[..., None] - beta[..., None] * log_d))
    return logsumexp(terms, axis=0)


def _objective(theta, log_n, log_d, log_loss, weights, delta):
    """Weighted Huber objective and its gradient in theta."""
    e, a, b, alpha, beta = theta
    terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
    prediction = logsumexp(terms, axis=0)
    shares = np.exp(terms - prediction)  # d prediction / d term
    residual = prediction - log_loss
    slope = weights * np.clip(residual, -delta, delta)  # Huber derivative
    gradient = np.array([slope @ shares[0], slope @ shares[1], slope @ shares[2],
                         -(slope * shares[1]) @ log_n, -(slope * shares[2]) @ log_d])
    return float(weights @ huber(residual, delta)), gradient


def _polish(start, log_n, log_d, log_loss, weights, delta):
    result = optimize.minimize(_objective, start, args=(log_n, log_d, log_loss, weights, delta), jac=True,
                               method="L-BFGS-B", bounds=BOUNDS, options={"maxiter": 500})
    return result.x, float(result.fun)


def _batch_terms(theta, log_n, log_d):
    """(n, 3, runs) terms of the log-sum-exp for a batch of theta (n, 5)."""
    e, a, b, alpha, beta = (theta[:, k:k + 1] for k in range(5))
    return np.stack(np.broadcast_arrays(e, a - alpha * log_n, b - beta * log_d), axis=1)


def _batch_objective(theta, log_n, log_d, log_loss, weights, delta):
    prediction = logsumexp(_batch_terms(theta, log_n, log_d), axis=1)
    return np.sum(weights * huber(prediction - log_loss, delta), axis=1)


def _surface_model(theta, log_n, log_d):
    """log L(N, D) of a batch of theta (n, 5) and its Jacobian (n, runs, 5)."""
    terms = _batch_terms(theta, log_n, log_d)
    prediction = logsumexp(terms, axis=1)
    shares = np.exp(terms - prediction[:, None])
    jacobian = np.stack([shares[:, 0], shares[:, 1], shares[:, 2],
                         -shares[:, 1] * log_n, -shares[:, 2] * log_d], axis=-1)
    return prediction, jacobian


def irls_batch(theta, log_n, log_d, log_loss, weights, delta=HUBER_DELTA, max_iter=100, tol=1e-9):
    """Minimise the weighted Huber objective of L(N, D) for each row of theta (n, 5) with its own
    weights (n, runs); see `huber_irls`."""
    return huber_irls(theta, lambda rows: _surface_model(rows, log_n, log_d), log_loss, weights, BOUNDS,
                      delta, max_iter, tol)


@dataclass(frozen=True)
class ParametricFit:
    """Best full-data fit and the bootstrap replicates of (e, a, b, alpha, beta)."""

    theta: np.ndarray  # (e, a, b, alpha, beta)
    objective: float
    n_points: int
    log_residuals: np.ndarray  # log L observed - log L fitted, per run
    bootstrap: np.ndarray  # (n_bootstrap, 5)

    @property
    def parameters(self) -> dict[str, float]:
        """E, A, B, alpha, beta of the full-data fit."""
        return dict(zip(PARAMETER_NAMES, natural_parameters(self.theta)))

    @property
    def at_bounds(self) -> str:
        """The parameters the fit left on a bound of the search (BOUNDS), e.g. "E, A (lower); alpha
        (upper)": the data do not determine them. Empty when none is."""
        low, high = np.array(BOUNDS, float).T
        tolerance = 1e-6 * (high - low)
        sides = [(side, [name for name, value, edge, tol in zip(PARAMETER_NAMES, self.theta, edges, tolerance)
                         if abs(value - edge) <= tol]) for side, edges in (("lower", low), ("upper", high))]
        return "; ".join(f"{', '.join(names)} ({side})" for side, names in sides if names)

    def parameter_intervals(self, confidence: float) -> np.ndarray:
        """(5, 2) percentile intervals of E, A, B, alpha, beta; NaN without resamples."""
        if len(self.bootstrap) == 0:
            return np.full((5, 2), np.nan)
        tail = 50 * (1 - confidence)
        return np.percentile(natural_parameters(self.bootstrap), [tail, 100 - tail], axis=0).T


def natural_parameters(theta) -> np.ndarray:
    """(E, A, B, alpha, beta) from (e, a, b, alpha, beta), along the last axis."""
    theta = np.asarray(theta, float)
    return np.concatenate([np.exp(theta[..., :3]), theta[..., 3:]], axis=-1)


def fit_parametric(params, samples, loss, *, n_bootstrap: int = 1000, n_starts: int = 16,
                   delta: float = HUBER_DELTA, seed: int = 0) -> ParametricFit:
    """Fit L(N, D) to runs (one row each) and bootstrap it over runs.

    Needs at least 6 runs (5 parameters plus one degree of freedom).
    """
    params, samples, loss = (np.asarray(v, float).ravel() for v in (params, samples, loss))
    if len(params) < 6:
        raise ValueError(f"the parametric fit L(N, D) needs at least 6 runs with loss and samples, got {len(params)}")
    log_n, log_d, log_loss = np.log(params), np.log(samples), np.log(loss)
    ones = np.ones_like(log_n)

    # Screen the whole grid in one vectorised pass, then polish the best few.
    grid = np.stack(np.meshgrid(*START_GRID, indexing="ij"), axis=-1).reshape(-1, 5)
    screen = huber(log_predict(grid, log_n, log_d) - log_loss, delta).sum(axis=1)
    best_starts = grid[np.argsort(screen)[:n_starts]]
    refined = irls_batch(best_starts, log_n, log_d, log_loss, np.tile(ones, (len(best_starts), 1)), delta)
    values = _batch_objective(refined, log_n, log_d, log_loss, ones, delta)
    # A final L-BFGS-B polish of the best start (Chinchilla's optimiser); kept only if it is lower.
    theta, objective = refined[np.argmin(values)], float(values.min())
    polished, polished_value = _polish(theta, log_n, log_d, log_loss, ones, delta)
    if polished_value < objective:
        theta, objective = polished, polished_value

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(log_n), np.full(len(log_n), 1.0 / len(log_n)), size=n_bootstrap).astype(float)
    bootstrap = irls_batch(np.repeat(theta[None], n_bootstrap, axis=0), log_n, log_d, log_loss, counts, delta)
    residuals = log_loss - log_predict(theta, log_n, log_d)
    return ParametricFit(theta=np.asarray(theta), objective=objective, n_points=len(log_n),
                         log_residuals=residuals, bootstrap=bootstrap.reshape(-1, 5))


def flops_per_sample_table(params, flops, samples) -> tuple[np.ndarray, np.ndarray]:
    """(N, f(N)) from runs: f = C / samples, the median over budgets for each N.

    The median guards against one run overshooting its budget by a batch.
    """
    params, flops, samples = (np.asarray(v, float).ravel() for v in (params, flops, samples))
    keep = np.isfinite(params) & np.isfinite(flops) & np.isfinite(samples) & (samples > 0)
    sizes = np.unique(params[keep])
    cost = np.array([np.median(flops[keep][params[keep] == n] / samples[keep][params[keep] == n]) for n in sizes])
    return sizes, cost


def _cost_at(log10_n, table_n, table_cost):
    """f(N) by log-log interpolation of the table, straight-line extension at both ends."""
    log_n, log_cost = np.log10(table_n), np.log10(table_cost)
    inside = np.interp(log10_n, log_n, log_cost)
    below = log_cost[0] + (log10_n - log_n[0]) * (log_cost[1] - log_cost[0]) / (log_n[1] - log_n[0])
    above = log_cost[-1] + (log10_n - log_n[-1]) * (log_cost[-1] - log_cost[-2]) / (log_n[-1] - log_n[-2])
    return 10.0 ** np.where(log10_n < log_n[0], below, np.where(log10_n > log_n[-1], above, inside))


def compute_optimal(theta, budgets, table_n, table_cost, search_dex: float = 3.0) -> dict[str, np.ndarray]:
    """N*(C), D*(C) = C / f(N*), L*(C) minimising L(N, C / f(N)) over N.

    theta: (5,) or (n, 5); budgets: (m,). Returns arrays of shape (m,) or (n, m). The search
    covers the tabulated sizes widened by `search_dex` decades each side on a grid of N_GRID
    points, then refines each minimum by the vertex of the parabola through its neighbours.
    """
    table_n, table_cost = np.asarray(table_n, float), np.asarray(table_cost, float)
    if len(table_n) < 2:
        raise ValueError(f"FLOPs per sample known for {len(table_n)} model sizes; need 2 to interpolate")
    theta = np.atleast_2d(np.asarray(theta, float))
    log10_grid = np.linspace(np.log10(table_n.min()) - search_dex, np.log10(table_n.max()) + search_dex, N_GRID)
    cost = _cost_at(log10_grid, table_n, table_cost)
    step = log10_grid[1] - log10_grid[0]
    out = {key: np.empty((len(theta), len(budgets))) for key in ("n_opt", "d_opt", "l_min")}
    rows = np.arange(len(theta))
    for j, budget in enumerate(np.asarray(budgets, float)):
        log_d = np.log(budget / cost)
        curve = log_predict(theta, log10_grid * np.log(10), log_d)  # (n, N_GRID)
        best = np.clip(np.argmin(curve, axis=1), 1, N_GRID - 2)
        left, centre, right = curve[rows, best - 1], curve[rows, best], curve[rows, best + 1]
        denominator = left - 2 * centre + right
        shift = np.where(denominator > 0, 0.5 * (left - right) / np.where(denominator > 0, denominator, 1), 0.0)
        log10_n = log10_grid[best] + np.clip(shift, -1, 1) * step
        n_opt = 10.0**log10_n
        d_opt = budget / _cost_at(log10_n, table_n, table_cost)
        out["n_opt"][:, j], out["d_opt"][:, j] = n_opt, d_opt
        e, a, b, alpha, beta = theta.T  # each row of theta at its own N*, D*
        out["l_min"][:, j] = np.exp(logsumexp(np.stack([e, a - alpha * np.log(n_opt), b - beta * np.log(d_opt)]),
                                              axis=0))
    if len(theta) == 1:
        return {key: value[0] for key, value in out.items()}
    return out


# ---------------------------------------------------------------------------------------------
# One game's surface: the fit on its runs, allocations at its budgets and C*, the holdout refit
# ---------------------------------------------------------------------------------------------

MIN_RUNS = 6  # five parameters plus one degree of freedom


@dataclass(frozen=True)
class SurfaceResult:
    """L(N, D) of one game and what follows from it; `fit` is None when it was not fitted (see `note`)."""

    note: str
    fit: ParametricFit | None = None
    best_alloc: dict[str, np.ndarray] = field(default_factory=dict)  # n_opt, d_opt, l_min at the budgets and C*
    alloc: dict[str, np.ndarray] = field(default_factory=dict)  # the same with bootstrap bounds: (targets, bound)
    boot_alloc: dict[str, np.ndarray] | None = None  # per resample: (resamples, targets)
    l_forecast_pi: np.ndarray | None = None  # a new run's loss at C*: lo, hi
    holdout_budgets: np.ndarray = field(default_factory=lambda: np.array([]))
    holdout_l_min: np.ndarray | None = None  # L* at the held-out budgets by the refit without them


def _run_table(means: xr.Dataset) -> pd.DataFrame:
    """Seed-averaged runs of one game with finite loss and samples (one row per budget and size)."""
    table = means[["loss", "samples"]].to_dataframe().reset_index()
    return table[np.isfinite(table["loss"]) & np.isfinite(table["samples"]) & (table["samples"] > 0)]


def _cost_table(means: xr.Dataset):
    """FLOPs per sample of each size from the runs (budget / samples)."""
    table = means["samples"].to_dataframe().reset_index().dropna(subset=["samples"])
    return flops_per_sample_table(table["params"], table["flops"], table["samples"])


def fit_surface(means: xr.Dataset, budgets, forecast_budget, config: FitConfig) -> SurfaceResult:
    """L(N, D) on all runs and without the held-out budgets; allocations at every budget and C*."""
    runs = _run_table(means)
    n_runs = len(runs)
    if n_runs < MIN_RUNS:
        return SurfaceResult(f"not fitted: {n_runs} runs with loss and samples (need {MIN_RUNS})")
    sizes, cost = _cost_table(means)
    fit = fit_parametric(runs["params"], runs["samples"], runs["loss"], n_bootstrap=config.bootstrap,
                         seed=config.bootstrap_seed)
    targets = np.append(budgets, forecast_budget)
    best = compute_optimal(fit.theta, targets, sizes, cost)
    tail = 50 * (1 - config.confidence)
    note = f"{n_runs} runs, {config.bootstrap} bootstrap resamples of runs"
    if fit.at_bounds:
        note += f"; at the bounds of the search: {fit.at_bounds}, which the data do not determine"
    alloc = {key: np.stack([best[key], np.full(len(targets), np.nan), np.full(len(targets), np.nan)], -1)
             for key in best}
    boot, l_forecast_pi = None, None
    if config.bootstrap:
        boot = compute_optimal(fit.bootstrap, targets, sizes, cost)
        for key in boot:
            alloc[key][:, 1:] = np.percentile(boot[key], [tail, 100 - tail], axis=0).T
        # A new run's loss at C*: the fitted L*(C*) of each resample times a resampled residual.
        rng = np.random.default_rng(config.bootstrap_seed + 1)
        noisy = boot["l_min"][:, -1] * np.exp(rng.choice(fit.log_residuals, len(boot["l_min"])))
        l_forecast_pi = np.percentile(noisy, [tail, 100 - tail])

    # Holdout: refit without the largest budgets' runs, predict their minimum loss.
    k = config.holdout_budgets
    held_budgets = np.sort(budgets)[::-1][:k] if k else np.array([])
    keep = ~np.isin(runs["flops"].values, held_budgets)
    holdout_l_min = None
    if len(held_budgets) and keep.sum() >= MIN_RUNS:
        kept = runs[keep]
        refit = fit_parametric(kept["params"], kept["samples"], kept["loss"], n_bootstrap=0)
        holdout_l_min = compute_optimal(refit.theta, held_budgets, sizes, cost)["l_min"]
    return SurfaceResult(note, fit, best, alloc, boot, l_forecast_pi, held_budgets, holdout_l_min)


def surface_law(result: SurfaceResult, budgets, quantity: str, observed_l_min, confidence: float) -> dict[str, float]:
    """LAW_STATS of log10 N*, D*, L* vs log10 C over the game's budgets (bootstrap interval of the slope)."""
    row = dict.fromkeys(LAW_STATS, np.nan)
    log_c = np.log10(budgets)
    design = np.column_stack([np.ones_like(log_c), log_c])
    best = np.log10(result.best_alloc[quantity][:-1])
    intercept, slope = np.linalg.lstsq(design, best, rcond=None)[0]
    row.update(slope=slope, intercept=intercept, n_points=result.fit.n_points, n_excluded=0)
    if result.boot_alloc is not None:
        boot = np.log10(result.boot_alloc[quantity][:, :-1])
        coefs = np.linalg.lstsq(design, boot.T, rcond=None)[0]
        tail = 50 * (1 - confidence)
        row.update(zip(("intercept_lo", "intercept_hi"), np.percentile(coefs[0], [tail, 100 - tail])))
        row.update(zip(("slope_lo", "slope_hi"), np.percentile(coefs[1], [tail, 100 - tail])))
    if quantity == "l_min" and result.holdout_l_min is not None:
        observed = np.array([observed_l_min[np.flatnonzero(budgets == c)[0]] for c in result.holdout_budgets])
        errors = np.log10(result.holdout_l_min) - np.log10(observed)
        row.update(holdout_n=len(errors), holdout_rmse=float(np.sqrt(np.mean(errors**2))),
                   holdout_max_abs_error=float(np.abs(errors).max()))
    return row
