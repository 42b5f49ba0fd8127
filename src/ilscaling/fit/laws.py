"""Laws across budgets: a line in log10 C through the per-budget optima, with one-step-ahead
cross-validation and a holdout refit of the largest budgets; the return shift of log fits.

Power laws y = a * C**b are fitted by OLS in log10-log10 space (slope = b, intercept = log10 a).
R_max(C) falls back to a line in log10 C when some R_max <= 0 (`LineFit.form` says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilscaling.fit.config import MIN_CV_FOLDS_TO_COMPARE, FitConfig
from ilscaling.fit.stats import LineFit, fit_line


def fit_budget_law(game: str, quantity: str, budgets, values, *, log_y: bool = True) -> LineFit:
    """Line in log10 C through one quantity's per-budget values (already filtered to use)."""
    budgets, values = np.asarray(budgets, float), np.asarray(values, float)
    if len(budgets) < 2:
        raise ValueError(f"game {game!r}: the {quantity} power law needs at least 2 compute budgets "
                         f"with a usable isoFLOP optimum, got {len(budgets)}")
    return fit_line(budgets, values, log_y=log_y)


def _fitted_space(fit: LineFit, y) -> np.ndarray:
    return np.log10(y) if fit.log_y else np.asarray(y, float)


def one_step_ahead(budgets, values, *, log_y: bool, confidence: float) -> dict[str, float]:
    """Fit on the first k budgets, predict budget k+1, for every k >= 3 (a prediction interval needs dof >= 1).

    Returns cv_folds, cv_rmse (in the fitted space: log10 y for power laws) and cv_coverage
    (share of predicted budgets inside the `confidence` prediction interval).
    """
    order = np.argsort(budgets)
    budgets, values = np.asarray(budgets, float)[order], np.asarray(values, float)[order]
    errors, inside = [], []
    for k in range(3, len(budgets)):
        fit = fit_line(budgets[:k], values[:k], log_y=log_y)
        predicted = _fitted_space(fit, fit.predict(budgets[k]))
        errors.append(float(predicted - _fitted_space(fit, values[k])))
        lo, hi = fit.prediction_band(budgets[k], confidence)
        inside.append(bool(lo <= values[k] <= hi))
    if not errors:
        return {"cv_folds": 0, "cv_rmse": np.nan, "cv_coverage": np.nan}
    return {"cv_folds": len(errors), "cv_rmse": float(np.sqrt(np.mean(np.square(errors)))),
            "cv_coverage": float(np.mean(inside))}


def holdout_check(budgets, values, k: int, *, log_y: bool, confidence: float) -> tuple[LineFit | None, dict, np.ndarray]:
    """Refit without the largest k budgets and score its predictions of them.

    Returns (fit or None, stats, held-out mask over the given budgets). No fit when fewer than
    2 budgets remain.
    """
    budgets, values = np.asarray(budgets, float), np.asarray(values, float)
    held = np.zeros(len(budgets), bool)
    if k > 0:
        held[np.argsort(budgets)[::-1][:k]] = True
    stats = {"holdout_n": int(held.sum()), "holdout_rmse": np.nan, "holdout_max_abs_error": np.nan,
             "holdout_coverage": np.nan}
    if held.sum() == 0 or (~held).sum() < 2:
        return None, stats, held
    fit = fit_line(budgets[~held], values[~held], log_y=log_y)
    errors = _fitted_space(fit, fit.predict(budgets[held])) - _fitted_space(fit, values[held])
    lo, hi = fit.prediction_band(budgets[held], confidence)
    stats.update(holdout_rmse=float(np.sqrt(np.mean(errors**2))), holdout_max_abs_error=float(np.abs(errors).max()),
                 holdout_coverage=float(np.mean((lo <= values[held]) & (values[held] <= hi))) if fit.dof > 0 else np.nan)
    return fit, stats, held


@dataclass(frozen=True)
class CheckedLaw:
    """A law across budgets with its cross-validation and its refit without the largest budgets."""

    fit: LineFit
    checks: dict[str, float]  # cv_* and holdout_* of LAW_STATS
    holdout: LineFit | None
    held: np.ndarray  # which of the given budgets the holdout refit left out


def law_with_checks(game, quantity, budgets, values, *, log_y, config: FitConfig) -> CheckedLaw:
    """A power law across budgets with its cross-validation and holdout refit."""
    fit = fit_budget_law(game, quantity, budgets, values, log_y=log_y)
    checks = one_step_ahead(budgets, values, log_y=log_y, confidence=config.confidence)
    holdout, holdout_stats, held = holdout_check(budgets, values, config.holdout_budgets, log_y=log_y,
                                                 confidence=config.confidence)
    checks.update(holdout_stats)
    return CheckedLaw(fit, checks, holdout, held)


def better_loss_form(power_cv_rmse: float, saturating_cv_rmse: float, folds: int) -> tuple[str | None, str]:
    """Which L_min law cross-validates better (lower one-step-ahead RMSE in log10 L), and a sentence saying so."""
    if not folds >= MIN_CV_FOLDS_TO_COMPARE or not (np.isfinite(power_cv_rmse) and np.isfinite(saturating_cv_rmse)):
        return None, (f"too few budgets to tell ({int(folds) if np.isfinite(folds) else 0} one-step-ahead folds, "
                      f"need {MIN_CV_FOLDS_TO_COMPARE})")
    if saturating_cv_rmse == power_cv_rmse:
        return None, f"tie (CV RMSE {power_cv_rmse:.3g} in log10 L over {int(folds)} folds)"
    better = "saturating" if saturating_cv_rmse < power_cv_rmse else "power"
    return better, (f"{'E + A C^b' if better == 'saturating' else 'pure power law'} cross-validates better "
                    f"(CV RMSE in log10 L: pure {power_cv_rmse:.3g}, saturating {saturating_cv_rmse:.3g}; "
                    f"{int(folds)} folds)")


def return_shift(returns, mode: str) -> float:
    """What is added to every return before a log fit: 0, or (mode 'shift') 1 - min(R) when some R <= 0.

    Shifting so the lowest return becomes 1 keeps every point; one game point is the natural
    unit of Atari scores.
    """
    returns = np.asarray(returns, float)
    returns = returns[np.isfinite(returns)]
    if mode != "shift" or len(returns) == 0 or returns.min() > 0:
        return 0.0
    return float(1.0 - returns.min())


def return_points(loss, returns, shift: float) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(1/L, R + shift) of finite points with R + shift > 0, the number excluded, and a note."""
    loss, returns = np.asarray(loss, float).ravel(), np.asarray(returns, float).ravel()
    finite = np.isfinite(loss) & np.isfinite(returns)
    loss, returns = loss[finite], returns[finite] + shift
    positive = returns > 0
    n_excluded = int((~positive).sum())
    note = (f"returns shifted by +{shift:g} (lowest becomes 1)" if shift
            else f"{n_excluded} points with return <= 0 excluded")
    return 1.0 / loss[positive], returns[positive], n_excluded, note
