"""Saturating loss law across budgets: L_min(C) = E + A * C**b, b < 0, E >= 0, A > 0.

Held-out losses have an irreducible floor (the entropy of the demonstrator's actions), so a
pure power law a * C**b, a line in log-log, bends away from the optima as C grows. This form
adds the floor E. It is fitted as Besiroglu et al. (2024, "Chinchilla scaling: a replication
attempt") recommend for such laws: Huber loss (delta 1e-3, `stats.HUBER_DELTA`) on the
residual log(E + A C^b) - log L, minimised from a grid of starts, the best kept. E and A are
parameterised by their logs (e, a) so both stay positive; C enters as x = log10 C - x_ref with
x_ref the mean log10 C of the fitted budgets, which keeps e, a and b on similar scales. The grid
is screened by one vectorised evaluation, the best starts are refined together by the batched
Huber IRLS of `stats.huber_irls`, and the best few are polished by L-BFGS-B (kept if lower).

Intervals come from a residual bootstrap. The budgets are designed, not sampled, so the design is
kept fixed and only the noise is resampled: each resample adds log residuals of the full fit,
drawn with replacement and inflated by sqrt(n / (n - 3)) for the three fitted parameters, to the
fitted curve, and is refitted from the full-data optimum. Resampling the budgets instead (pairs
bootstrap) would, with 5-10 budgets, drop the largest budget from about a third of the resamples
and leave many with fewer than 3 distinct budgets, where E, A and b are not identified. A resample
is unusable when its refit is not finite or ends with b at its upper bound (no decrease: then E
and A are not separately identified); those are skipped and counted. With 3 budgets the fit is
exact and there is nothing to resample: no intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ilscaling.fit.config import FLOOR_INFO, FitConfig
from ilscaling.fit.stats import HUBER_DELTA, huber, huber_irls, logsumexp

PARAMETERS = ("E", "A", "b")
MIN_POINTS = 3  # three parameters
LN10 = np.log(10.0)
B_BOUNDS = (-5.0, -1e-6)  # exponent per factor of C; b < 0 strictly
E_FRACTIONS = np.array([1e-6, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97])  # starting E as a share of the lowest loss
B_STARTS = np.array([-0.02, -0.05, -0.1, -0.2, -0.5, -1.0, -2.0])
N_POLISHED = 4  # best refined starts polished by L-BFGS-B


def _bounds(log_loss: np.ndarray) -> list[tuple[float, float]]:
    """Bounds of (e, a, b): E from ~0 (pure power law) up to the largest loss; A C^b likewise at x_ref."""
    low, high = float(log_loss.min()), float(log_loss.max())
    return [(low - 20.0, high), (low - 30.0, high + 10.0), B_BOUNDS]


def _model(theta, x):
    """log(E + A C^b) at x = log10 C - x_ref for theta rows (n, 3), and its Jacobian (n, points, 3)."""
    e, a, b = (theta[:, k:k + 1] for k in range(3))
    terms = np.stack(np.broadcast_arrays(e, a + b * LN10 * x), axis=1)  # (n, 2, points)
    prediction = logsumexp(terms, axis=1)
    power_share = np.exp(terms[:, 1] - prediction)
    jacobian = np.stack([1.0 - power_share, power_share, power_share * LN10 * x], axis=-1)
    return prediction, jacobian


def _objective(theta, x, log_loss, delta):
    prediction, jacobian = _model(theta[None], x)
    residual = prediction[0] - log_loss
    return float(huber(residual, delta).sum()), np.clip(residual, -delta, delta) @ jacobian[0]


def _starts(x, log_loss) -> np.ndarray:
    """Grid over (E, b); a from the mean of log(L - E) - b ln10 x, so each start passes through the data."""
    floor = np.exp(log_loss.min())
    starts = []
    for fraction in E_FRACTIONS:
        e = np.log(fraction * floor)
        gap = np.log(np.exp(log_loss) - fraction * floor)
        for b in B_STARTS:
            starts.append([e, float(np.mean(gap - b * LN10 * x)), b])
    return np.array(starts)


def _best_fit(x, log_loss, delta) -> tuple[np.ndarray, float]:
    bounds = _bounds(log_loss)
    starts = np.clip(_starts(x, log_loss), *np.array(bounds).T)
    ones = np.ones((len(starts), len(x)))
    refined = huber_irls(starts, lambda rows: _model(rows, x), log_loss, ones, bounds, delta)
    values = np.sum(huber(_model(refined, x)[0] - log_loss, delta), axis=1)
    best_theta, best_value = refined[np.argmin(values)], float(values.min())
    for start in refined[np.argsort(values)[:N_POLISHED]]:
        result = optimize.minimize(_objective, start, args=(x, log_loss, delta), jac=True, method="L-BFGS-B",
                                   bounds=bounds, options={"maxiter": 500})
        if np.all(np.isfinite(result.x)) and result.fun < best_value:
            best_theta, best_value = result.x, float(result.fun)
    return np.asarray(best_theta, float), best_value


@dataclass(frozen=True)
class FloorLawFit:
    """L(C) = E + A C^b fitted to per-budget optima, with bootstrap replicates of (e, a, b)."""

    theta: np.ndarray  # (e, a, b) with E = exp(e), A C^b = exp(a + b ln10 (log10 C - x_ref))
    x_ref: float
    objective: float
    n_points: int
    log_residuals: np.ndarray  # log L observed - log L fitted
    bootstrap: np.ndarray  # (usable resamples, 3)
    n_bootstrap: int  # resamples drawn (usable ones are len(bootstrap))

    def log_predict(self, budgets, theta=None) -> np.ndarray:
        """log L at the budgets, for the fit (or for each row of `theta`: shape (rows, budgets))."""
        rows = np.atleast_2d(self.theta if theta is None else theta)
        x = np.log10(np.asarray(budgets, float)).ravel() - self.x_ref
        prediction = _model(rows, x)[0]
        return prediction[0] if theta is None else prediction

    def predict(self, budgets) -> np.ndarray:
        return np.exp(self.log_predict(budgets)).reshape(np.shape(budgets))

    def natural(self, theta=None) -> np.ndarray:
        """(E, A, b) of the fit or of each row of `theta`, with A in units of C^b (A C^b, C in FLOPs)."""
        theta = np.asarray(self.theta if theta is None else theta, float)
        e, a, b = np.moveaxis(theta, -1, 0)
        return np.stack([np.exp(e), np.exp(a - b * LN10 * self.x_ref), b], axis=-1)

    def parameter_table(self, confidence: float) -> np.ndarray:
        """(3, 3): (value, lo, hi) of E, A, b; percentile intervals, NaN without usable resamples."""
        table = np.full((3, 3), np.nan)
        table[:, 0] = self.natural()
        if len(self.bootstrap):
            tail = 50 * (1 - confidence)
            table[:, 1:] = np.percentile(self.natural(self.bootstrap), [tail, 100 - tail], axis=0).T
        return table

    def prediction_interval(self, budget: float, confidence: float, seed: int) -> tuple[float, float]:
        """A new optimum's loss at `budget`: each resample's curve times a resampled (inflated) residual."""
        if not len(self.bootstrap):
            return np.nan, np.nan
        curves = self.log_predict([budget], self.bootstrap)[:, 0]
        rng = np.random.default_rng(seed)
        noisy = np.exp(curves + rng.choice(self.scaled_residuals(), len(curves)))
        tail = 50 * (1 - confidence)
        return tuple(np.percentile(noisy, [tail, 100 - tail]))

    def scaled_residuals(self) -> np.ndarray:
        """Log residuals inflated by sqrt(n / (n - 3)): fitted residuals understate the noise."""
        dof = self.n_points - len(PARAMETERS)
        return self.log_residuals * np.sqrt(self.n_points / dof) if dof > 0 else self.log_residuals * np.nan


def fit_floor_law(budgets, values, *, n_bootstrap: int = 0, seed: int = 0, delta: float = HUBER_DELTA) -> FloorLawFit:
    """Fit L = E + A C^b to per-budget optima (one per budget) and bootstrap it (see the module docstring)."""
    budgets, values = np.asarray(budgets, float), np.asarray(values, float)
    if len(budgets) < MIN_POINTS:
        raise ValueError(f"the saturating law E + A C^b needs at least {MIN_POINTS} budgets, got {len(budgets)}")
    if np.any(budgets <= 0) or np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise ValueError("the saturating law needs positive budgets and positive, finite losses")
    log_c, log_loss = np.log10(budgets), np.log(values)
    x_ref = float(log_c.mean())
    x = log_c - x_ref
    theta, objective = _best_fit(x, log_loss, delta)
    residuals = log_loss - _model(theta[None], x)[0][0]
    fit = FloorLawFit(theta=theta, x_ref=x_ref, objective=objective, n_points=len(x), log_residuals=residuals,
                      bootstrap=np.empty((0, 3)), n_bootstrap=0)
    if n_bootstrap <= 0 or len(x) <= MIN_POINTS:
        return fit
    rng = np.random.default_rng(seed)
    noise = rng.choice(fit.scaled_residuals(), size=(n_bootstrap, len(x)))
    targets = _model(theta[None], x)[0] + noise
    bounds = _bounds(log_loss)
    replicates = huber_irls(np.repeat(theta[None], n_bootstrap, axis=0), lambda rows: _model(rows, x), targets,
                            np.ones_like(targets), bounds, delta)
    usable = np.all(np.isfinite(replicates), axis=1) & (replicates[:, 2] < B_BOUNDS[1] - 1e-9)
    return FloorLawFit(theta=theta, x_ref=x_ref, objective=objective, n_points=len(x), log_residuals=residuals,
                       bootstrap=replicates[usable], n_bootstrap=n_bootstrap)


def floor_one_step_ahead(budgets, values) -> dict[str, float]:
    """As `laws.one_step_ahead` for the pure law: fit the first k budgets, predict budget k+1, for every
    k >= 3; the errors in log10 L, so the two forms' cv_rmse compare fold by fold."""
    order = np.argsort(budgets)
    budgets, values = np.asarray(budgets, float)[order], np.asarray(values, float)[order]
    errors = [float(np.log10(fit_floor_law(budgets[:k], values[:k]).predict(budgets[k])) - np.log10(values[k]))
              for k in range(3, len(budgets))]
    if not errors:
        return {"cv_folds": 0, "cv_rmse": np.nan}
    return {"cv_folds": len(errors), "cv_rmse": float(np.sqrt(np.mean(np.square(errors))))}


def floor_holdout(budgets, values, k: int) -> dict[str, float]:
    """As `laws.holdout_check`: refit without the largest k budgets, errors in log10 L on them."""
    budgets, values = np.asarray(budgets, float), np.asarray(values, float)
    held = np.zeros(len(budgets), bool)
    if k > 0:
        held[np.argsort(budgets)[::-1][:k]] = True
    stats = {"holdout_n": int(held.sum()), "holdout_rmse": np.nan, "holdout_max_abs_error": np.nan}
    if held.sum() == 0 or (~held).sum() < MIN_POINTS:
        return stats
    fit = fit_floor_law(budgets[~held], values[~held])
    errors = np.log10(fit.predict(budgets[held])) - np.log10(values[held])
    stats.update(holdout_rmse=float(np.sqrt(np.mean(errors**2))), holdout_max_abs_error=float(np.abs(errors).max()))
    return stats


@dataclass(frozen=True)
class CheckedFloorLaw:
    """E + A C^b through one method's L_min optima, checked exactly as the pure law is."""

    note: str
    table: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.nan))  # (value, lo, hi) of E, A, b
    info: dict = field(default_factory=lambda: dict.fromkeys(FLOOR_INFO, np.nan))
    forecast: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # L_min at C*: value, lo, hi


def floor_law_with_checks(budgets, values, forecast_budget: float, config: FitConfig) -> CheckedFloorLaw:
    """The saturating law with its bootstrap intervals, FLOOR_INFO and the loss forecast at C*."""
    if len(budgets) < MIN_POINTS:
        return CheckedFloorLaw(f"not fitted: {len(budgets)} budgets (need {MIN_POINTS})")
    fit = fit_floor_law(budgets, values, n_bootstrap=config.bootstrap, seed=config.bootstrap_seed)
    info = dict.fromkeys(FLOOR_INFO, np.nan)
    info.update(n_points=fit.n_points, huber_objective=fit.objective, n_bootstrap=fit.n_bootstrap,
                n_bootstrap_usable=len(fit.bootstrap),
                log_residual_sd=float(np.std(fit.log_residuals, ddof=1)) if fit.n_points > 1 else np.nan)
    info.update(floor_one_step_ahead(budgets, values))
    info.update(floor_holdout(budgets, values, config.holdout_budgets))
    lo, hi = fit.prediction_interval(forecast_budget, config.confidence, config.bootstrap_seed + 1)
    if fit.n_points == MIN_POINTS:
        note = f"{MIN_POINTS} budgets: exact fit, no intervals"
    else:
        note = f"{fit.n_points} budgets; residual bootstrap, {len(fit.bootstrap)} of {fit.n_bootstrap} resamples usable"
    return CheckedFloorLaw(note, fit.parameter_table(config.confidence), info,
                           np.array([float(fit.predict(forecast_budget)), lo, hi]))
