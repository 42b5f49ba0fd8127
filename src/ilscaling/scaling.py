"""Scaling-law fits: isoFLOP profiles per compute budget, then power laws across budgets.

The pipeline follows Tuyls et al. (2023), section 3 (itself after Hoffmann et al. 2022):

1. Seeds are averaged first (mean over `seed`, ignoring NaN).
2. For every game and budget C, the isoFLOP profile is fitted by a quadratic in x = log10 N:
   log10(loss) for the loss profile, the raw return for the return profile (returns can be
   zero or negative, so no log). The vertex gives N_opt and L_min (resp. R_max), with 95%
   intervals by the delta method from the OLS covariance. A profile that is not convex
   (loss) / concave (return), or whose vertex falls outside the evaluated sizes, is flagged
   `edge` and its raw best point is used instead, without an interval.
3. D_opt(C) is the number of samples at N_opt, by log-log interpolation of that budget's
   samples-vs-params table.
4. Power laws y = a * C**b are fitted by OLS in log10-log10 space; the stored line is
   log10 y = intercept + slope * log10 C, so slope = b and intercept = log10 a. R_max(C) falls
   back to a line in log10 C (y = intercept + slope * log10 C) when some R_max <= 0; the
   `law_form` variable says which. Return vs loss is R = a * (1/L)**k over every
   (loss, return) point with return > 0.

The loss that is fitted is `FitConfig.loss_metric`: the held-out cross entropy on the recorded
actions (as the paper), or the held-out KL(π_expert ‖ π_BC), the part of it a better imitator can
remove when the expert samples (its cross entropy sits on the expert's own entropy). A game with no
finite value of the chosen metric (NetHack and published sets have no expert distribution) is fitted
on cross entropy; fits.nc says per game which metric was fitted (`loss_metric`).

Every fitted quantity carries its interval; the result Dataset (`fit_results`) holds enough
(quadratic coefficients, line covariances) for figures to draw fits and bands without refitting.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ilscaling.flops import budget_label

METRICS = ("loss", "return")
QUADRATIC_POWERS = (2, 1, 0)  # np.polyval order: coefficient of x**2, x, 1
LAW_QUANTITIES = ("n_opt", "d_opt", "l_min", "r_max", "return_vs_loss")
LAW_STATS = (
    "slope", "slope_lo", "slope_hi", "intercept", "intercept_lo", "intercept_hi", "r2",
    "n_points", "n_excluded", "dof", "residual_variance", "var_slope", "var_intercept",
    "cov_slope_intercept",
    # one-step-ahead cross-validation over budgets (fit the first k, predict the next), errors in
    # the fitted space (log10 y for power laws); coverage = share inside the prediction interval
    "cv_folds", "cv_rmse", "cv_coverage",
    # holdout: refit without the largest `holdout_budgets` budgets, predict them
    "holdout_n", "holdout_rmse", "holdout_max_abs_error", "holdout_coverage",
)
METHODS = ("raw", "vertex", "parametric")  # per-budget argmin/argmax, parabola vertex, L(N, D) surface
FIT_SETS = ("all", "holdout")
TARGETS = ("n_opt", "d_opt", "l_min", "r_max")
BOUNDS = ("value", "lo", "hi")
POWER_LAW = "power"  # log10 y = intercept + slope * log10 x
LINEAR_IN_LOG10_X = "linear_log10x"  # y = intercept + slope * log10 x
NOT_FITTED = "not_fitted"
REQUIRED_VARIABLES = ("loss", "return", "samples")
REQUIRED_DIMS = ("game", "flops", "params", "seed")
NEGATIVE_RETURN_MODES = ("exclude", "shift")
# Saturating loss law L_min(C) = E + A C^b (ilscaling.floorlaw) of the per-budget optima, beside the pure law.
FLOOR_METHODS = ("raw", "vertex")
FLOOR_INFO = ("n_points", "huber_objective", "n_bootstrap", "n_bootstrap_usable", "log_residual_sd",
              "cv_folds", "cv_rmse", "holdout_n", "holdout_rmse", "holdout_max_abs_error")
MIN_CV_FOLDS_TO_COMPARE = 2  # fewer one-step-ahead folds cannot tell the pure and saturating laws apart
LOSS_METRICS = {"cross_entropy": "loss", "kl": "kl"}  # fit.loss_metric -> the results variable holding it
LOSS_METRIC_TEXT = {"cross_entropy": "cross entropy", "kl": "KL(expert ‖ BC)"}

# Per-budget variables of the fits Dataset, dims (game, flops), all float.
LOSS_BUDGET_VARIABLES = ("n_opt", "n_opt_lo", "n_opt_hi", "l_min", "l_min_lo", "l_min_hi",
                         "d_opt", "d_opt_lo", "d_opt_hi")
RETURN_BUDGET_VARIABLES = ("r_max", "r_max_lo", "r_max_hi", "n_opt_return", "n_opt_return_lo",
                           "n_opt_return_hi")


@dataclass(frozen=True)
class FitConfig:
    """How isoFLOP profiles feed the power laws."""

    # An optimum at the grid's edge is censored (the true one lies beyond), so it stays out of the power laws
    # by default; it is still shown and listed. See the README's isoFLOP vertex defaults.
    exclude_edge_budgets: bool = True
    min_sizes_per_budget: int = 3  # budgets with fewer evaluated sizes are skipped (vertex method)
    confidence: float = 0.95  # level of every interval and band
    # Fit each parabola only within this many decades of the raw optimum; 0 = all sizes (the default: on the
    # authors' Atari data and on noisy synthetic sweeps a window raised the exponents' variance more than it
    # removed the parabola's bias).
    vertex_window_dex: float = 0.0
    holdout_budgets: int = 1  # refit without the largest k budgets and predict them
    forecast_budget: float = 0.0  # target budget C* of the forecast, every game; 0 = forecast_factor x its largest budget
    forecast_factor: float = 10.0  # C* = this x each game's largest budget (where forecast_budget is 0)
    forecast_budgets: str = ""  # per-game C*, "Game=1e13,Game=5e13": overrides the two above for those games
    negative_returns: str = "exclude"  # returns <= 0 in log fits: "exclude" them, or "shift" all returns
    bootstrap: int = 1000  # resamples of the parametric fit L(N, D) and of the saturating loss law E + A C^b
    bootstrap_seed: int = 0
    loss_metric: str = "cross_entropy"  # the loss fitted: "cross_entropy" (recorded actions) or "kl" (expert policy)

    def __post_init__(self):
        if self.min_sizes_per_budget < 3:
            raise ValueError(f"min_sizes_per_budget must be >= 3 (a quadratic has 3 coefficients), "
                             f"got {self.min_sizes_per_budget}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.vertex_window_dex < 0:
            raise ValueError(f"vertex_window_dex must be >= 0 (0 = all sizes), got {self.vertex_window_dex}")
        if self.holdout_budgets < 0:
            raise ValueError(f"holdout_budgets must be >= 0, got {self.holdout_budgets}")
        if self.forecast_budget < 0:
            raise ValueError(f"forecast_budget must be > 0 (or 0 for forecast_factor x the largest budget), "
                             f"got {self.forecast_budget}")
        if not self.forecast_factor > 0:
            raise ValueError(f"forecast_factor must be > 0, got {self.forecast_factor}")
        if self.negative_returns not in NEGATIVE_RETURN_MODES:
            raise ValueError(f"negative_returns must be one of {NEGATIVE_RETURN_MODES}, got {self.negative_returns!r}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.loss_metric not in LOSS_METRICS:
            raise ValueError(f"loss_metric must be one of {tuple(LOSS_METRICS)}, got {self.loss_metric!r}")
        self.game_forecast_budgets()  # raises on a malformed spec

    def game_forecast_budgets(self) -> dict[str, float]:
        """The per-game budgets of `forecast_budgets` ("Game=1e13,Game=5e13")."""
        budgets = {}
        for item in filter(None, (part.strip() for part in self.forecast_budgets.split(","))):
            game, sep, value = item.partition("=")
            try:
                budget = float(value) if sep and game.strip() else float("nan")
            except ValueError:
                budget = float("nan")
            if not budget > 0 or not np.isfinite(budget):
                raise ValueError(f"forecast_budgets: {item!r} is not Game=<positive FLOPs>")
            budgets[game.strip()] = budget
        return budgets

    def forecast_budget_of(self, game: str, largest_budget: float) -> float:
        """C* of one game: its own budget, else forecast_budget, else forecast_factor x its largest budget."""
        return self.game_forecast_budgets().get(game) or self.forecast_budget or self.forecast_factor * largest_budget

    def to_attrs(self) -> dict:
        """NetCDF attributes (no booleans there, so flags become 0/1)."""
        return {f"config_{k}": int(v) if isinstance(v, bool) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs: dict) -> FitConfig:
        """The config a fits Dataset was made with (inverse of `to_attrs`)."""
        values = {}
        for field in dataclasses.fields(cls):
            key = f"config_{field.name}"
            if key in attrs:
                kind = type(field.default)
                values[field.name] = kind(attrs[key].item() if hasattr(attrs[key], "item") else attrs[key])
        return cls(**values)


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile; NaN when there are no residual degrees of freedom."""
    if dof <= 0:
        return float("nan")
    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


# ---------------------------------------------------------------------------------------------
# Ordinary least squares with covariance
# ---------------------------------------------------------------------------------------------

def _ols(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Coefficients, their covariance s^2 (X'X)^-1, residual variance s^2 and dof of y ~ X."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(y) - design.shape[1]
    residuals = y - design @ coef
    residual_variance = float(residuals @ residuals / dof) if dof > 0 else float("nan")
    covariance = residual_variance * np.linalg.pinv(design.T @ design)
    return coef, covariance, residual_variance, dof


@dataclass(frozen=True)
class QuadraticFit:
    """y = a*x**2 + b*x + c by OLS, with the coefficient covariance."""

    coef: np.ndarray  # (a, b, c)
    covariance: np.ndarray  # 3 x 3, NaN when the fit is exact (3 points)
    dof: int

    def __call__(self, x) -> np.ndarray:
        return np.polyval(self.coef, x)

    @property
    def vertex(self) -> float:
        a, b, _ = self.coef
        return float(-b / (2.0 * a))

    def vertex_value(self) -> float:
        return float(self(self.vertex))

    def vertex_intervals(self, confidence: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """Delta-method intervals of the vertex x* = -b/2a and of y(x*) = c - b^2/4a."""
        a, b, _ = self.coef
        grad_x = np.array([b / (2 * a**2), -1 / (2 * a), 0.0])
        grad_y = np.array([b**2 / (4 * a**2), -b / (2 * a), 1.0])
        t = t_quantile(confidence, self.dof)
        half_x = t * np.sqrt(grad_x @ self.covariance @ grad_x)
        half_y = t * np.sqrt(grad_y @ self.covariance @ grad_y)
        x, y = self.vertex, self.vertex_value()
        return (x - half_x, x + half_x), (y - half_y, y + half_y)


def fit_quadratic(x, y) -> QuadraticFit:
    """Least-squares parabola through (x, y); needs at least 3 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        raise ValueError(f"a quadratic needs at least 3 points, got {len(x)}")
    coef, covariance, _, dof = _ols(np.vander(x, 3), y)
    return QuadraticFit(coef=coef, covariance=covariance, dof=dof)


@dataclass(frozen=True)
class LineFit:
    """A line in log10 x: Y = intercept + slope * log10(x), where Y = log10 y (`log_y`) or y.

    With `log_y` this is the power law y = 10**intercept * x**slope.
    """

    slope: float
    intercept: float
    covariance: np.ndarray  # 2 x 2 over (intercept, slope)
    residual_variance: float
    dof: int
    n_points: int
    r2: float
    log_y: bool = True
    n_excluded: int = 0  # points dropped before fitting (e.g. returns <= 0 of a power law)

    @property
    def form(self) -> str:
        return POWER_LAW if self.log_y else LINEAR_IN_LOG10_X

    @property
    def prefactor(self) -> float:
        """a of y = a * x**b (power laws only)."""
        return 10.0 ** self.intercept

    def _untransform(self, values):
        return 10.0 ** values if self.log_y else values

    def predict(self, x) -> np.ndarray:
        return self._untransform(self.intercept + self.slope * np.log10(np.asarray(x, float)))

    def _band(self, x, confidence: float, include_noise: bool) -> tuple[np.ndarray, np.ndarray]:
        log_x = np.log10(np.asarray(x, float))
        centre = self.intercept + self.slope * log_x
        c = self.covariance
        variance = c[0, 0] + 2 * log_x * c[0, 1] + log_x**2 * c[1, 1]
        if include_noise:
            variance = variance + self.residual_variance
        half = t_quantile(confidence, self.dof) * np.sqrt(variance)
        return self._untransform(centre - half), self._untransform(centre + half)

    def confidence_band(self, x, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise interval of the fitted line (mean response) at x."""
        return self._band(x, confidence, include_noise=False)

    def prediction_band(self, x, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise interval of a new observation at x (line uncertainty plus scatter)."""
        return self._band(x, confidence, include_noise=True)

    def to_stats(self, confidence: float) -> dict[str, float]:
        """The LAW_STATS of this fit (intervals at `confidence`)."""
        t = t_quantile(confidence, self.dof)
        slope_half = t * np.sqrt(self.covariance[1, 1])
        intercept_half = t * np.sqrt(self.covariance[0, 0])
        return {
            "slope": self.slope, "slope_lo": self.slope - slope_half, "slope_hi": self.slope + slope_half,
            "intercept": self.intercept, "intercept_lo": self.intercept - intercept_half,
            "intercept_hi": self.intercept + intercept_half, "r2": self.r2,
            "n_points": self.n_points, "n_excluded": self.n_excluded, "dof": self.dof,
            "residual_variance": self.residual_variance, "var_slope": self.covariance[1, 1],
            "var_intercept": self.covariance[0, 0], "cov_slope_intercept": self.covariance[0, 1],
        }

    @classmethod
    def from_stats(cls, law_stats: dict[str, float], form: str) -> LineFit:
        """Rebuild a fit from its stored LAW_STATS (inverse of `to_stats`)."""
        if form not in (POWER_LAW, LINEAR_IN_LOG10_X):
            raise ValueError(f"law form {form!r} has no fitted line")
        covariance = np.array([[law_stats["var_intercept"], law_stats["cov_slope_intercept"]],
                               [law_stats["cov_slope_intercept"], law_stats["var_slope"]]], float)
        return cls(slope=float(law_stats["slope"]), intercept=float(law_stats["intercept"]),
                   covariance=covariance, residual_variance=float(law_stats["residual_variance"]),
                   dof=int(law_stats["dof"]), n_points=int(law_stats["n_points"]), r2=float(law_stats["r2"]),
                   log_y=form == POWER_LAW, n_excluded=int(law_stats["n_excluded"]))


def fit_line(x, y, *, log_y: bool = True, n_excluded: int = 0) -> LineFit:
    """OLS of Y on log10 x (Y = log10 y if `log_y`); needs at least 2 points, 3 for intervals."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        raise ValueError(f"a line needs at least 2 points, got {len(x)}")
    if np.any(x <= 0) or (log_y and np.any(y <= 0)):
        raise ValueError("a power law needs positive x and y")
    log_x = np.log10(x)
    response = np.log10(y) if log_y else y
    design = np.column_stack([np.ones_like(log_x), log_x])
    coef, covariance, residual_variance, dof = _ols(design, response)
    residuals = response - design @ coef
    total = np.sum((response - response.mean()) ** 2)
    r2 = float(1.0 - residuals @ residuals / total) if total > 0 else float("nan")
    return LineFit(slope=float(coef[1]), intercept=float(coef[0]), covariance=covariance,
                   residual_variance=residual_variance, dof=dof, n_points=len(x), r2=r2, log_y=log_y,
                   n_excluded=n_excluded)


# ---------------------------------------------------------------------------------------------
# isoFLOP profiles
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Power laws across budgets
# ---------------------------------------------------------------------------------------------

def fit_budget_law(game: str, quantity: str, budgets, values, *, log_y: bool = True) -> LineFit:
    """Line in log10 C through one quantity's per-budget values (already filtered to use)."""
    budgets, values = np.asarray(budgets, float), np.asarray(values, float)
    if len(budgets) < 2:
        raise ValueError(f"game {game!r}: the {quantity} power law needs at least 2 compute budgets "
                         f"with a usable isoFLOP optimum, got {len(budgets)}")
    return fit_line(budgets, values, log_y=log_y)


# ---------------------------------------------------------------------------------------------
# Raw optima (as the authors' plotting code): the best evaluated size per budget
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Power laws with cross-validation and holdout
# ---------------------------------------------------------------------------------------------

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


def _law_with_checks(game, quantity, budgets, values, *, log_y, config) -> dict:
    """A power law across budgets with its cross-validation and holdout refit."""
    fit = fit_budget_law(game, quantity, budgets, values, log_y=log_y)
    extra = one_step_ahead(budgets, values, log_y=log_y, confidence=config.confidence)
    holdout, holdout_stats, held = holdout_check(budgets, values, config.holdout_budgets, log_y=log_y,
                                                 confidence=config.confidence)
    extra.update(holdout_stats)
    return {"fit": fit, "extra": extra, "holdout": holdout, "held": held}


def _floor_law_with_checks(budgets, values, forecast_budget: float, config: FitConfig) -> dict:
    """E + A C^b through one method's L_min optima: (value, lo, hi) of E, A, b, FLOOR_INFO, the loss
    forecast at C* with its prediction interval, and a note. Checked exactly as the pure law is."""
    from ilscaling.floorlaw import MIN_POINTS, fit_floor_law, floor_holdout, floor_one_step_ahead

    out = {"table": np.full((3, 3), np.nan), "info": dict.fromkeys(FLOOR_INFO, np.nan),
           "forecast": np.full(3, np.nan), "fit": None}
    if len(budgets) < MIN_POINTS:
        out["note"] = f"not fitted: {len(budgets)} budgets (need {MIN_POINTS})"
        return out
    fit = fit_floor_law(budgets, values, n_bootstrap=config.bootstrap, seed=config.bootstrap_seed)
    out["fit"], out["table"] = fit, fit.parameter_table(config.confidence)
    out["info"].update(n_points=fit.n_points, huber_objective=fit.objective, n_bootstrap=fit.n_bootstrap,
                       n_bootstrap_usable=len(fit.bootstrap),
                       log_residual_sd=float(np.std(fit.log_residuals, ddof=1)) if fit.n_points > 1 else np.nan)
    out["info"].update(floor_one_step_ahead(budgets, values))
    out["info"].update(floor_holdout(budgets, values, config.holdout_budgets))
    lo, hi = fit.prediction_interval(forecast_budget, config.confidence, config.bootstrap_seed + 1)
    out["forecast"] = np.array([float(fit.predict(forecast_budget)), lo, hi])
    if fit.n_points == MIN_POINTS:
        out["note"] = f"{MIN_POINTS} budgets: exact fit, no intervals"
    else:
        out["note"] = (f"{fit.n_points} budgets; residual bootstrap, {len(fit.bootstrap)} of {fit.n_bootstrap} "
                       "resamples usable")
    return out


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


# ---------------------------------------------------------------------------------------------
# Return vs loss: power law and saturating form
# ---------------------------------------------------------------------------------------------

SATURATING_PARAMETERS = ("a", "d", "b")  # R = 1 / (a * (1/L)**d + b)
SATURATING_INFO = ("residual_variance", "dof", "n_points", "n_excluded", "r2", "shift")


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


def _prepare_return_points(loss, returns, shift: float) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(1/L, R + shift) of finite points with R + shift > 0, the number excluded, and a note."""
    loss, returns = np.asarray(loss, float).ravel(), np.asarray(returns, float).ravel()
    finite = np.isfinite(loss) & np.isfinite(returns)
    loss, returns = loss[finite], returns[finite] + shift
    positive = returns > 0
    n_excluded = int((~positive).sum())
    note = (f"returns shifted by +{shift:g} (lowest becomes 1)" if shift
            else f"{n_excluded} points with return <= 0 excluded")
    return 1.0 / loss[positive], returns[positive], n_excluded, note


@dataclass(frozen=True)
class SaturatingFit:
    """R + shift = 1 / (a * x**d + b), x = 1/L, fitted by least squares on log R."""

    coef: np.ndarray  # a, d, b
    covariance: np.ndarray
    residual_variance: float
    dof: int
    n_points: int
    n_excluded: int
    r2: float
    shift: float

    def _log_terms(self, x):
        a, d, b = self.coef
        x = np.asarray(x, float)
        denominator = a * x**d + b
        gradient = -np.stack([x**d, a * x**d * np.log(x), np.ones_like(x)]) / denominator
        return -np.log(denominator), gradient

    def predict(self, x) -> np.ndarray:
        return np.exp(self._log_terms(x)[0]) - self.shift

    def band(self, x, confidence: float, include_noise: bool) -> tuple[np.ndarray, np.ndarray]:
        """Delta-method interval on log(R + shift) at x = 1/L."""
        centre, gradient = self._log_terms(x)
        variance = np.einsum("i...,ij,j...->...", gradient, self.covariance, gradient)
        if include_noise:
            variance = variance + self.residual_variance
        half = t_quantile(confidence, self.dof) * np.sqrt(variance)
        return np.exp(centre - half) - self.shift, np.exp(centre + half) - self.shift

    def intervals(self, confidence: float) -> np.ndarray:
        """(value, lo, hi) of a, d, b; a and b > 0, so theirs are symmetric in log (as fitted)."""
        t = t_quantile(confidence, self.dof)
        se = np.sqrt(np.diag(self.covariance))
        out = np.stack([self.coef, self.coef - t * se, self.coef + t * se], axis=-1)
        for k in (0, 2):
            with np.errstate(over="ignore"):  # an unidentified b (no saturation in the data) gives [0, inf]
                spread = np.exp(t * se[k] / self.coef[k])
            out[k, 1:] = self.coef[k] / spread, self.coef[k] * spread
        return out


def fit_saturating(x, returns, *, n_excluded: int, shift: float, start: LineFit | None) -> SaturatingFit | None:
    """Nonlinear least squares of log R on R = 1/(a x^d + b), started from the power law; None if it fails."""
    from scipy.optimize import curve_fit

    x, returns = np.asarray(x, float), np.asarray(returns, float)
    if len(x) < 4:
        return None
    # The power law R = c x^k is the b = 0 limit: a = 1/c, d = -k.
    a0, d0 = (1.0 / start.prefactor, -start.slope) if start is not None else (1.0 / returns.mean(), -1.0)
    b0 = 0.1 / returns.max()

    def model(values, log_a, d, log_b):
        return -np.log(np.exp(log_a) * values**d + np.exp(log_b))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (log_a, d, log_b), cov_log, *_ = curve_fit(model, x, np.log(returns), p0=[np.log(a0), d0, np.log(b0)],
                                                       maxfev=20000, full_output=True)[:2]
    except (RuntimeError, ValueError):
        return None
    a, b = np.exp(log_a), np.exp(log_b)
    residuals = np.log(returns) - model(x, log_a, d, log_b)
    dof = len(x) - 3
    residual_variance = float(residuals @ residuals / dof)
    jacobian = np.diag([a, 1.0, b])  # from (log a, d, log b) to (a, d, b)
    # curve_fit reports an unidentified parameter as an infinite covariance: no interval then.
    covariance = jacobian @ cov_log @ jacobian if np.all(np.isfinite(cov_log)) else np.full((3, 3), np.nan)
    total = np.sum((np.log(returns) - np.log(returns).mean()) ** 2)
    r2 = float(1 - residuals @ residuals / total) if total > 0 else np.nan
    if not np.all(np.isfinite(covariance)):
        covariance = np.full((3, 3), np.nan)
    return SaturatingFit(np.array([a, d, b]), covariance, residual_variance, dof, len(x), n_excluded, r2, shift)


# ---------------------------------------------------------------------------------------------
# Parametric fit L(N, D) and its compute-optimal allocation
# ---------------------------------------------------------------------------------------------

def _run_table(means: xr.Dataset) -> pd.DataFrame:
    """Seed-averaged runs of one game with finite loss and samples (one row per budget and size)."""
    table = means[["loss", "samples"]].to_dataframe().reset_index()
    return table[np.isfinite(table["loss"]) & np.isfinite(table["samples"]) & (table["samples"] > 0)]


def _cost_table(means: xr.Dataset):
    """FLOPs per sample of each size from the runs (budget / samples), see ilscaling.parametric."""
    from ilscaling.parametric import flops_per_sample_table

    table = means["samples"].to_dataframe().reset_index().dropna(subset=["samples"])
    return flops_per_sample_table(table["params"], table["flops"], table["samples"])


def _parametric_fits(means: xr.Dataset, budgets, forecast_budget, holdout_budgets, config) -> dict:
    """L(N, D) on all runs and without the held-out budgets; allocations at every budget and C*."""
    from ilscaling.parametric import compute_optimal, fit_parametric

    runs = _run_table(means)
    n_runs = len(runs)
    if n_runs < 6:
        return {"note": f"not fitted: {n_runs} runs with loss and samples (need 6)"}
    sizes, cost = _cost_table(means)
    fit = fit_parametric(runs["params"], runs["samples"], runs["loss"], n_bootstrap=config.bootstrap,
                         seed=config.bootstrap_seed)
    targets = np.append(budgets, forecast_budget)
    best = compute_optimal(fit.theta, targets, sizes, cost)
    tail = 50 * (1 - config.confidence)
    note = f"{n_runs} runs, {config.bootstrap} bootstrap resamples of runs"
    if fit.at_bounds:
        note += f"; at the bounds of the search: {fit.at_bounds}, which the data do not determine"
    result = {"fit": fit, "note": note,
              "alloc": {key: np.stack([best[key], np.full(len(targets), np.nan), np.full(len(targets), np.nan)], -1)
                        for key in best}}
    if config.bootstrap:
        boot = compute_optimal(fit.bootstrap, targets, sizes, cost)
        for key in boot:
            result["alloc"][key][:, 1:] = np.percentile(boot[key], [tail, 100 - tail], axis=0).T
        # A new run's loss at C*: the fitted L*(C*) of each resample times a resampled residual.
        rng = np.random.default_rng(config.bootstrap_seed + 1)
        noisy = boot["l_min"][:, -1] * np.exp(rng.choice(fit.log_residuals, len(boot["l_min"])))
        result["l_forecast_pi"] = np.percentile(noisy, [tail, 100 - tail])
        result["boot_alloc"] = boot
    result["best_alloc"] = best

    # Holdout: refit without the largest budgets' runs, predict their minimum loss.
    held_budgets = np.sort(budgets)[::-1][:holdout_budgets] if holdout_budgets else np.array([])
    keep = ~np.isin(runs["flops"].values, held_budgets)
    result["holdout"] = None
    if len(held_budgets) and keep.sum() >= 6:
        kept = runs[keep]
        refit = fit_parametric(kept["params"], kept["samples"], kept["loss"], n_bootstrap=0)
        result["holdout"] = {"budgets": held_budgets,
                             "l_min": compute_optimal(refit.theta, held_budgets, sizes, cost)["l_min"]}
    return result


def _parametric_law(result: dict, budgets, quantity: str, observed_l_min, confidence: float) -> dict[str, float]:
    """LAW_STATS of log10 N*, D*, L* vs log10 C over the game's budgets (bootstrap interval of the slope)."""
    row = dict.fromkeys(LAW_STATS, np.nan)
    log_c = np.log10(budgets)
    design = np.column_stack([np.ones_like(log_c), log_c])
    best = np.log10(result["best_alloc"][quantity][:-1])
    intercept, slope = np.linalg.lstsq(design, best, rcond=None)[0]
    row.update(slope=slope, intercept=intercept, n_points=result["fit"].n_points, n_excluded=0)
    if "boot_alloc" in result:
        boot = np.log10(result["boot_alloc"][quantity][:, :-1])
        coefs = np.linalg.lstsq(design, boot.T, rcond=None)[0]
        tail = 50 * (1 - confidence)
        row.update(zip(("intercept_lo", "intercept_hi"), np.percentile(coefs[0], [tail, 100 - tail])))
        row.update(zip(("slope_lo", "slope_hi"), np.percentile(coefs[1], [tail, 100 - tail])))
    if quantity == "l_min" and result.get("holdout") is not None:
        held = result["holdout"]
        observed = np.array([observed_l_min[np.flatnonzero(budgets == c)[0]] for c in held["budgets"]])
        errors = np.log10(held["l_min"]) - np.log10(observed)
        row.update(holdout_n=len(errors), holdout_rmse=float(np.sqrt(np.mean(errors**2))),
                   holdout_max_abs_error=float(np.abs(errors).max()))
    return row


# ---------------------------------------------------------------------------------------------
# One game
# ---------------------------------------------------------------------------------------------

def _method_series(values: dict, flags: dict, method: str) -> dict:
    """Per-budget targets of one method and which budgets enter its power laws."""
    return {"values": {q: values[method][q] for q in TARGETS},
            "used": {"loss": flags[method]["loss"]["used_in_fit"], "return": flags[method]["return"]["used_in_fit"]}}


def _game_fits(game: str, means: xr.Dataset, config: FitConfig) -> dict:
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
        flags["raw"][metric] = {"edge": raw_edge,
                                "used_in_fit": np.isfinite(raw_value) & ~(raw_edge & config.exclude_edge_budgets)}

    has_loss = bool(np.isfinite(means["loss"].values).any())
    shift = return_shift(means["return"].values, config.negative_returns)
    forecast_budget = config.forecast_budget_of(game, budgets[np.isfinite(means["loss"].values).any(axis=1)
                                                          | np.isfinite(means["return"].values).any(axis=1)].max())
    floor = {m: {"note": "not fitted: no loss values for this game", "table": np.full((3, 3), np.nan),
                 "info": dict.fromkeys(FLOOR_INFO, np.nan), "forecast": np.full(3, np.nan), "fit": None}
             for m in FLOOR_METHODS}
    laws = {(m, f): {} for m in METHODS for f in FIT_SETS}
    forms = {(m, f): dict.fromkeys(LAW_QUANTITIES, NOT_FITTED) for m in METHODS for f in FIT_SETS}
    notes = {(m, f): dict.fromkeys(LAW_QUANTITIES, "") for m in METHODS for f in FIT_SETS}
    extras = {m: {} for m in METHODS}
    held_out = {m: {metric: np.zeros(len(budgets), bool) for metric in METRICS} for m in METHODS}
    for method in ("raw", "vertex"):
        series = _method_series(values, flags, method)
        for quantity in TARGETS:
            metric = "return" if quantity == "r_max" else "loss"
            if metric == "loss" and not has_loss:
                notes[(method, "all")][quantity] = "not fitted: no loss values for this game"
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
                skipped = int(flags[method][metric].get("skipped", np.zeros(0, bool)).sum())
                why = (f"; {edges} budgets with the optimum at the grid's edge left out (exclude_edge_budgets)"
                       if config.exclude_edge_budgets and edges else "")
                why += f"; {skipped} budgets skipped (fewer sizes than min_sizes_per_budget)" if skipped else ""
                notes[(method, "all")][quantity] = (f"not fitted: {keep.sum()} budgets with a usable "
                                                    f"{'return' if metric == 'return' else 'loss'} optimum{why}")
                continue
            result = _law_with_checks(game, quantity, budgets[keep], y, log_y=log_y, config=config)
            if quantity == "l_min":
                floor[method] = _floor_law_with_checks(budgets[keep], y, forecast_budget, config)
            laws[(method, "all")][quantity] = result["fit"]
            extras[method][quantity] = result["extra"]
            forms[(method, "all")][quantity], notes[(method, "all")][quantity] = result["fit"].form, note
            held_out[method][metric][np.flatnonzero(keep)[result["held"]]] = True
            if result["holdout"] is not None:
                laws[(method, "holdout")][quantity] = result["holdout"]
                forms[(method, "holdout")][quantity] = result["holdout"].form
                notes[(method, "holdout")][quantity] = f"without the largest {config.holdout_budgets} budget(s)"

    # Return vs loss is one fit over every run, whatever the method.
    x, r, n_excluded, note = _prepare_return_points(means["loss"].values, means["return"].values, shift)
    rvl = fit_line(x, r, n_excluded=n_excluded) if len(x) >= 2 else None
    if rvl is None:
        note = f"not fitted: {len(x)} usable (loss, return) points (need 2); {note}"
    saturating = fit_saturating(x, r, n_excluded=n_excluded, shift=shift, start=rvl) if rvl is not None else None
    for method in METHODS:
        laws[(method, "all")]["return_vs_loss"] = rvl
        forms[(method, "all")]["return_vs_loss"] = rvl.form if rvl else NOT_FITTED
        notes[(method, "all")]["return_vs_loss"] = note

    parametric = (_parametric_fits(means, budgets, forecast_budget, config.holdout_budgets, config) if has_loss
                  else {"note": "not fitted: no loss values for this game"})
    parametric_rows = {}
    if "fit" in parametric:
        for quantity in ("n_opt", "d_opt", "l_min"):
            parametric_rows[quantity] = _parametric_law(parametric, budgets, quantity, raw_values["l_min"],
                                                               config.confidence)
            forms[("parametric", "all")][quantity] = POWER_LAW
            notes[("parametric", "all")][quantity] = ("fitted line through N*(C), D*(C), L*(C) of the L(N, D) "
                                                      "surface over the game's budgets; " + parametric["note"])
    else:
        for quantity in ("n_opt", "d_opt", "l_min"):
            notes[("parametric", "all")][quantity] = parametric["note"]

    forecast = _forecast(laws, parametric, forecast_budget, shift, config)
    return {"values": values, "flags": flags, "laws": laws, "forms": forms, "notes": notes, "extras": extras,
            "held_out": held_out, "saturating": saturating, "shift": shift, "parametric": parametric,
            "parametric_rows": parametric_rows, "forecast": forecast, "forecast_budget": forecast_budget,
            "floor": floor}


def _forecast(laws, parametric, budget, shift, config) -> np.ndarray:
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
    if "fit" in parametric:
        k = METHODS.index("parametric")
        for j, quantity in enumerate(("n_opt", "d_opt", "l_min")):
            out[k, j] = parametric["alloc"][quantity][-1]
        if "l_forecast_pi" in parametric:
            out[k, 2, 1:] = parametric["l_forecast_pi"]
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


# ---------------------------------------------------------------------------------------------
# Whole results file
# ---------------------------------------------------------------------------------------------

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
    """The loss metric a fits Dataset fitted for `game` (files written before the choice existed: cross entropy)."""
    return str(fits["loss_metric"].sel(game=game).item()) if "loss_metric" in fits else "cross_entropy"


def fitted_results(results: xr.Dataset, fits: xr.Dataset) -> xr.Dataset:
    """`results` whose `loss` is, game by game, the metric that `fits` fitted (what figures must show)."""
    games = [str(g) for g in fits["game"].values if g in results["game"].values]
    return select_loss_metric(results, {g: fitted_loss_metric(fits, g) for g in games})


def loss_axis_label(metric: str, symbol: str = "") -> str:
    """An axis label naming the loss metric, e.g. "held-out loss L (KL(expert ‖ BC))"."""
    return f"held-out loss{' ' + symbol if symbol else ''} ({LOSS_METRIC_TEXT[metric]})"


def validate_results(results: xr.Dataset, loss_metrics: dict[str, str] | None = None) -> None:
    """Raise ValueError naming the problem (and game) for results that cannot be fitted.

    `loss_metrics` (game -> metric) names what `loss` holds per game (default: cross entropy).
    """
    missing = [v for v in REQUIRED_VARIABLES if v not in results.data_vars]
    missing_dims = [d for d in REQUIRED_DIMS if d not in results.dims]
    if missing or missing_dims:
        raise ValueError(f"results dataset lacks variables {missing} / dims {missing_dims}")
    if any(results.sizes[d] == 0 for d in REQUIRED_DIMS) or not (
            np.isfinite(results["loss"].values).any() or np.isfinite(results["return"].values).any()):
        raise ValueError(f"results dataset is empty (sizes {dict(results.sizes)}, no finite loss or return)")
    for game in map(str, results["game"].values):
        loss = results["loss"].sel(game=game)
        returns = results["return"].sel(game=game)
        if not np.isfinite(loss.values).any() and not np.isfinite(returns.values).any():
            raise ValueError(f"game {game!r}: every loss and return value is NaN (no finished runs)")
        if not np.isfinite(loss.values).any():
            # Published sets can hold returns only (e.g. DoubleDunk); its loss laws are reported as not fitted.
            loss = returns
        bad = results["loss"].sel(game=game)
        bad = bad.where(bad <= 0)
        if np.isfinite(bad.values).any():
            first = bad.stack(point=bad.dims).dropna("point")["point"].values[0]
            where = ", ".join(f"{dim}={budget_label(value) if dim == 'flops' else value}"
                              for dim, value in zip(bad.dims, first))
            metric = LOSS_METRIC_TEXT[(loss_metrics or {}).get(game, "cross_entropy")]
            raise ValueError(f"game {game!r}: non-positive loss values ({metric}; first at {where}); "
                             f"a loss must be > 0 to fit in log space")
        has_data = np.isfinite(loss).any([d for d in loss.dims if d != "flops"])
        budgets_with_data = loss["flops"].values[has_data.values]
        if len(budgets_with_data) < 2:
            raise ValueError(f"game {game!r}: results of a single compute budget "
                             f"({', '.join(map(budget_label, budgets_with_data))}); "
                             f"scaling laws need at least 2 budgets")



def _law_rows(fit: LineFit | None, extra: dict | None, confidence: float) -> np.ndarray:
    row = dict.fromkeys(LAW_STATS, np.nan)
    if fit is not None:
        row.update(fit.to_stats(confidence))
    row.update(extra or {})
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
    per_game = [_game_fits(g, means.sel(game=g), config) for g in games]
    budget_dims, flag_dims = ("game", "flops"), ("game", "flops", "metric")
    n_flops = results.sizes["flops"]

    data = {}
    for name in LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES:
        data[name] = (budget_dims, np.stack([f["values"]["vertex"][name] for f in per_game]))
    for name in ("n_opt", "d_opt", "l_min", "r_max", "n_opt_return"):
        data[f"raw_{name}"] = (budget_dims, np.stack([f["values"]["raw"][name] for f in per_game]))
    for name in ("edge", "skipped", "used_in_fit", "status", "n_sizes", "log10n_min", "log10n_max"):
        stacked = np.stack([np.stack([f["flags"]["vertex"][m][name] for m in METRICS], axis=-1) for f in per_game])
        target = {"log10n_min": "quad_log10n_min", "log10n_max": "quad_log10n_max"}.get(name, name)
        data[target] = (flag_dims, stacked.astype(str) if name == "status" else stacked)
    for name in ("edge", "used_in_fit"):
        data[f"raw_{name}"] = (flag_dims, np.stack([np.stack([f["flags"]["raw"][m][name] for m in METRICS], axis=-1)
                                                    for f in per_game]))
    data["held_out"] = (("game", "method", "flops", "metric"),
                        np.stack([np.stack([np.stack([f["held_out"][m][metric] for metric in METRICS], axis=-1)
                                            for m in METHODS]) for f in per_game]))
    data["quad_coef"] = (flag_dims + ("power",),
                         np.stack([np.stack([f["flags"]["vertex"][m]["coef"] for m in METRICS], axis=1)
                                   for f in per_game]))

    laws = np.full((len(games), len(METHODS), len(FIT_SETS), len(LAW_QUANTITIES), len(LAW_STATS)), np.nan)
    forms = np.full(laws.shape[:-1], NOT_FITTED, dtype=object)
    notes = np.full(laws.shape[:-1], "", dtype=object)
    for i, f in enumerate(per_game):
        for a, method in enumerate(METHODS):
            for b, fit_set in enumerate(FIT_SETS):
                for c, quantity in enumerate(LAW_QUANTITIES):
                    forms[i, a, b, c] = f["forms"][(method, fit_set)][quantity]
                    notes[i, a, b, c] = f["notes"][(method, fit_set)][quantity]
                    if method == "parametric" and fit_set == "all" and quantity in f["parametric_rows"]:
                        laws[i, a, b, c] = [f["parametric_rows"][quantity][s] for s in LAW_STATS]
                        continue
                    fit = f["laws"][(method, fit_set)].get(quantity)
                    extra = f["extras"][method].get(quantity) if fit_set == "all" else None
                    if fit is not None:
                        laws[i, a, b, c] = _law_rows(fit, extra, config.confidence)
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
        fit = f["saturating"]
        if fit is not None:
            saturating[i] = fit.intervals(config.confidence)
            saturating_cov[i] = fit.covariance
            saturating_info[i] = [fit.residual_variance, fit.dof, fit.n_points, fit.n_excluded, fit.r2, fit.shift]
    data["saturating"] = (("game", "sat_param", "bound"), saturating)
    data["saturating_cov"] = (("game", "sat_param", "sat_param2"), saturating_cov)
    data["saturating_info"] = (("game", "sat_info"), saturating_info)
    data["return_shift"] = ("game", np.array([f["shift"] for f in per_game]))

    from ilscaling.parametric import PARAMETER_NAMES

    parametric = np.full((len(games), len(PARAMETER_NAMES), 3), np.nan)
    parametric_info = np.full((len(games), 4), np.nan)
    parametric_opt = np.full((len(games), n_flops, 3, 3), np.nan)
    for i, f in enumerate(per_game):
        result = f["parametric"]
        if "fit" not in result:
            continue
        fit = result["fit"]
        parametric[i, :, 0] = list(fit.parameters.values())
        parametric[i, :, 1:] = fit.parameter_intervals(config.confidence)
        parametric_info[i] = [fit.n_points, len(fit.bootstrap), fit.objective, float(np.std(fit.log_residuals, ddof=1))]
        for j, key in enumerate(("n_opt", "d_opt", "l_min")):
            parametric_opt[i, :, j] = result["alloc"][key][:-1]
    data["parametric"] = (("game", "pparam", "bound"), parametric)
    data["parametric_info"] = (("game", "pinfo"), parametric_info)
    data["parametric_opt"] = (("game", "flops", "ptarget", "bound"), parametric_opt)
    data["parametric_note"] = ("game", np.array([f["parametric"]["note"] for f in per_game], str))
    data["forecast"] = (("game", "method", "target", "bound"), np.stack([f["forecast"] for f in per_game]))
    floor_dims = ("game", "floor_method")
    data["floor_law"] = (floor_dims + ("floor_param", "bound"),
                         np.array([[f["floor"][m]["table"] for m in FLOOR_METHODS] for f in per_game]))
    data["floor_info"] = (floor_dims + ("floor_stat",),
                          np.array([[[f["floor"][m]["info"][k] for k in FLOOR_INFO] for m in FLOOR_METHODS]
                                    for f in per_game], float))
    data["floor_forecast"] = (floor_dims + ("bound",),
                              np.array([[f["floor"][m]["forecast"] for m in FLOOR_METHODS] for f in per_game]))
    data["floor_note"] = (floor_dims, np.array([[f["floor"][m]["note"] for m in FLOOR_METHODS] for f in per_game], str))
    data["forecast_budget"] = ("game", np.array([f["forecast_budget"] for f in per_game]))
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
    fits.attrs.update(
        description="isoFLOP profiles, power laws and parametric fits of a BC scaling sweep (ilscaling.scaling)",
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
    if "laws" not in fits:  # fits files written before methods existed
        where = {"game": game, "quantity": quantity}
        form, row = str(fits["law_form"].sel(where).item()), fits["law"].sel(where)
    else:
        form, row = str(fits["law_forms"].sel(where).item()), fits["laws"].sel(where)
    if form == NOT_FITTED:
        return None
    stats = {s: float(row.sel(stat=s)) for s in LAW_STATS if s in row["stat"].values}
    if not np.isfinite(stats.get("var_slope", np.nan)) and not np.isfinite(stats.get("residual_variance", np.nan)) \
            and not np.isfinite(stats.get("dof", np.nan)):
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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

LAW_LABELS = {
    "n_opt": "N_opt ∝ C^b",
    "d_opt": "D_opt ∝ C^b",
    "l_min": "L_min ∝ C^b",
    "r_max": "R_max ∝ C^b",
    "return_vs_loss": "R ∝ (1/L)^k",
}


def _format_interval(row: xr.DataArray, name: str = "slope") -> str:
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
                f"| {method} | {label} | {form} | {stat['slope']:.3f} | {_format_interval(row)} | "
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
    if "floor_law" not in fits:
        return []
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
    if "floor_forecast" in fits:
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


def write_fits(results_nc: str | os.PathLike, fits_nc: str | os.PathLike, summary_md: str | os.PathLike,
               config: FitConfig = FitConfig()) -> xr.Dataset:
    """Fit the results file; write the fits NetCDF and the markdown summary atomically."""
    from ilscaling.io import atomic_path, open_netcdf

    with open_netcdf(results_nc, "results") as results:
        fits = fit_results(results.load(), config)
    with atomic_path(fits_nc, suffix=".nc") as tmp:
        fits.to_netcdf(tmp)
    with atomic_path(summary_md, suffix=".md") as tmp:
        tmp.write_text(summary_markdown(fits))
    return fits
