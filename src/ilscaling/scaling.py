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

Every fitted quantity carries its interval; the result Dataset (`fit_results`) holds enough
(quadratic coefficients, line covariances) for figures to draw fits and bands without refitting.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

METRICS = ("loss", "return")
QUADRATIC_POWERS = (2, 1, 0)  # np.polyval order: coefficient of x**2, x, 1
LAW_QUANTITIES = ("n_opt", "d_opt", "l_min", "r_max", "return_vs_loss")
LAW_STATS = (
    "slope", "slope_lo", "slope_hi", "intercept", "intercept_lo", "intercept_hi", "r2",
    "n_points", "n_excluded", "dof", "residual_variance", "var_slope", "var_intercept",
    "cov_slope_intercept",
)
POWER_LAW = "power"  # log10 y = intercept + slope * log10 x
LINEAR_IN_LOG10_X = "linear_log10x"  # y = intercept + slope * log10 x
NOT_FITTED = "not_fitted"
REQUIRED_VARIABLES = ("loss", "return", "samples")
REQUIRED_DIMS = ("game", "flops", "params", "seed")

# Per-budget variables of the fits Dataset, dims (game, flops), all float.
LOSS_BUDGET_VARIABLES = ("n_opt", "n_opt_lo", "n_opt_hi", "l_min", "l_min_lo", "l_min_hi",
                         "d_opt", "d_opt_lo", "d_opt_hi")
RETURN_BUDGET_VARIABLES = ("r_max", "r_max_lo", "r_max_hi", "n_opt_return", "n_opt_return_lo",
                           "n_opt_return_hi")


@dataclass(frozen=True)
class FitConfig:
    """How isoFLOP profiles feed the power laws."""

    exclude_edge_budgets: bool = False  # drop edge-flagged budgets from the power laws (default: keep, mark)
    min_sizes_per_budget: int = 3  # budgets with fewer evaluated sizes are skipped
    confidence: float = 0.95  # level of every interval and band

    def __post_init__(self):
        if self.min_sizes_per_budget < 3:
            raise ValueError(f"min_sizes_per_budget must be >= 3 (a quadratic has 3 coefficients), "
                             f"got {self.min_sizes_per_budget}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")

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


def budget_text(budget: float) -> str:
    """1e10, 2e10, 2.5e11: a budget written the way configs write it."""
    mantissa, exponent = f"{budget:.6e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


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
    """Mean over seeds, ignoring NaN (a combination never run stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices are expected
        return results.mean("seed", skipna=True, keep_attrs=True)


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
    optimum = profile_optimum(x, y, maximize=maximize, confidence=config.confidence)
    record.update(optimum=optimum, coef=optimum.fit.coef, edge=optimum.edge, status=optimum.status)
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


def fit_return_vs_loss(loss, returns) -> tuple[LineFit | None, int, str]:
    """R = a * (1/L)**k over (loss, return) points with return > 0.

    Returns (fit or None, number of points excluded for return <= 0, note).
    """
    loss, returns = np.asarray(loss, float).ravel(), np.asarray(returns, float).ravel()
    finite = np.isfinite(loss) & np.isfinite(returns)
    loss, returns = loss[finite], returns[finite]
    positive = returns > 0
    n_excluded = int((~positive).sum())
    note = f"{n_excluded} points with return <= 0 excluded"
    if positive.sum() < 2:
        return None, n_excluded, f"not fitted: {int(positive.sum())} points with return > 0 (need 2); {note}"
    return fit_line(1.0 / loss[positive], returns[positive], n_excluded=n_excluded), n_excluded, note


# ---------------------------------------------------------------------------------------------
# Whole results file
# ---------------------------------------------------------------------------------------------

def validate_results(results: xr.Dataset) -> None:
    """Raise ValueError naming the problem (and game) for results that cannot be fitted."""
    missing = [v for v in REQUIRED_VARIABLES if v not in results.data_vars]
    missing_dims = [d for d in REQUIRED_DIMS if d not in results.dims]
    if missing or missing_dims:
        raise ValueError(f"results dataset lacks variables {missing} / dims {missing_dims}")
    if any(results.sizes[d] == 0 for d in REQUIRED_DIMS) or not np.isfinite(results["loss"].values).any():
        raise ValueError(f"results dataset is empty (sizes {dict(results.sizes)}, no finite loss)")
    for game in map(str, results["game"].values):
        loss = results["loss"].sel(game=game)
        finite = np.isfinite(loss.values)
        if not finite.any():
            raise ValueError(f"game {game!r}: every loss value is NaN (no finished runs)")
        bad = loss.where(loss <= 0)
        if np.isfinite(bad.values).any():
            first = bad.stack(point=bad.dims).dropna("point")["point"].values[0]
            where = ", ".join(f"{dim}={budget_text(value) if dim == 'flops' else value}"
                              for dim, value in zip(bad.dims, first))
            raise ValueError(f"game {game!r}: non-positive loss values (first at {where}); "
                             f"a cross entropy must be > 0 to fit in log space")
        has_data = np.isfinite(loss).any([d for d in loss.dims if d != "flops"])
        budgets_with_data = loss["flops"].values[has_data.values]
        if len(budgets_with_data) < 2:
            raise ValueError(f"game {game!r}: results of a single compute budget "
                             f"({', '.join(map(budget_text, budgets_with_data))}); "
                             f"scaling laws need at least 2 budgets")


def _game_fits(game: str, means: xr.Dataset, config: FitConfig) -> dict:
    """Per-budget fits and power laws of one game (seed-averaged, dims flops, params)."""
    budgets = means["flops"].values.astype(float)
    per_budget = [fit_budget(means.sel(flops=c), config) for c in budgets]
    values = {name: np.array([b["values"][name] for b in per_budget])
              for name in LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES}
    flags = {}
    for metric in METRICS:
        records = [b[metric] for b in per_budget]
        optimum_value = values["n_opt"] if metric == "loss" else values["r_max"]
        edge = np.array([r["edge"] for r in records])
        skipped = np.array([r["skipped"] for r in records])
        flags[metric] = {
            "edge": edge, "skipped": skipped,
            "used_in_fit": ~skipped & np.isfinite(optimum_value) & ~(edge & config.exclude_edge_budgets),
            "status": np.array([r["status"] for r in records], dtype=object),
            "n_sizes": np.array([r["n_sizes"] for r in records]),
            "coef": np.stack([r["coef"] for r in records]),
            "log10n_min": np.array([r["log10n_min"] for r in records]),
            "log10n_max": np.array([r["log10n_max"] for r in records]),
        }

    laws, forms, notes = {}, {}, {}
    used = flags["loss"]["used_in_fit"]
    for quantity in ("n_opt", "d_opt", "l_min"):
        keep = used & np.isfinite(values[quantity])
        laws[quantity] = fit_budget_law(game, quantity, budgets[keep], values[quantity][keep])
        forms[quantity], notes[quantity] = POWER_LAW, f"{keep.sum()} budgets"

    keep = flags["return"]["used_in_fit"]
    r_max = values["r_max"][keep]
    log_y = bool(np.all(r_max > 0))
    laws["r_max"] = fit_budget_law(game, "r_max", budgets[keep], r_max, log_y=log_y)
    forms["r_max"] = laws["r_max"].form
    notes["r_max"] = f"{keep.sum()} budgets" + ("" if log_y else "; some R_max <= 0, so linear in log10 C")

    fit, _, note = fit_return_vs_loss(means["loss"].values, means["return"].values)
    laws["return_vs_loss"], forms["return_vs_loss"], notes["return_vs_loss"] = fit, fit.form if fit else NOT_FITTED, note
    return {"values": values, "flags": flags, "laws": laws, "forms": forms, "notes": notes}


def fit_results(results: xr.Dataset, config: FitConfig = FitConfig()) -> xr.Dataset:
    """Every isoFLOP and power-law fit of every game, in one Dataset.

    Variables:
      (game, flops): LOSS_BUDGET_VARIABLES, RETURN_BUDGET_VARIABLES (NaN = not available).
      (game, flops, metric): edge, skipped, used_in_fit (bool), status (str), n_sizes,
        quad_log10n_min / quad_log10n_max (the fitted range of log10 N).
      (game, flops, metric, power): quad_coef, coefficients of the parabola in x = log10 N of
        log10(loss) (metric loss) or return (metric return).
      (game, quantity, stat): law, the LAW_STATS of each power law (NaN if not fitted).
      (game, quantity): law_form (POWER_LAW, LINEAR_IN_LOG10_X or NOT_FITTED), law_note.
    The FitConfig is in the attrs (see FitConfig.from_attrs).
    """
    validate_results(results)
    means = seed_means(results[list(REQUIRED_VARIABLES)])
    games = [str(g) for g in results["game"].values]
    per_game = [_game_fits(g, means.sel(game=g), config) for g in games]
    budget_dims, flag_dims = ("game", "flops"), ("game", "flops", "metric")

    data = {}
    for name in LOSS_BUDGET_VARIABLES + RETURN_BUDGET_VARIABLES:
        data[name] = (budget_dims, np.stack([f["values"][name] for f in per_game]))
    for name in ("edge", "skipped", "used_in_fit", "status", "n_sizes", "log10n_min", "log10n_max"):
        stacked = np.stack([np.stack([f["flags"][m][name] for m in METRICS], axis=-1) for f in per_game])
        target = {"log10n_min": "quad_log10n_min", "log10n_max": "quad_log10n_max"}.get(name, name)
        data[target] = (flag_dims, stacked.astype(str) if name == "status" else stacked)
    data["quad_coef"] = (flag_dims + ("power",),
                         np.stack([np.stack([f["flags"][m]["coef"] for m in METRICS], axis=1) for f in per_game]))
    law = np.full((len(games), len(LAW_QUANTITIES), len(LAW_STATS)), np.nan)
    for i, f in enumerate(per_game):
        for j, quantity in enumerate(LAW_QUANTITIES):
            if f["laws"][quantity] is not None:
                law[i, j] = [f["laws"][quantity].to_stats(config.confidence)[s] for s in LAW_STATS]
    data["law"] = (("game", "quantity", "stat"), law)
    data["law_form"] = (("game", "quantity"), np.array([[f["forms"][q] for q in LAW_QUANTITIES] for f in per_game], str))
    data["law_note"] = (("game", "quantity"), np.array([[f["notes"][q] for q in LAW_QUANTITIES] for f in per_game], str))

    fits = xr.Dataset(data, coords={"game": games, "flops": results["flops"].values.astype(float),
                                    "metric": list(METRICS), "power": list(QUADRATIC_POWERS),
                                    "quantity": list(LAW_QUANTITIES), "stat": list(LAW_STATS)})
    fits.attrs.update(config.to_attrs())
    fits.attrs.update(
        description="isoFLOP profiles and power laws of a BC scaling sweep (ilscaling.scaling)",
        quad_coef="parabola in x=log10(params): log10(loss) for metric=loss, return for metric=return",
        law=(f"'{POWER_LAW}': log10 y = intercept + slope*log10 x (y = 10**intercept * x**slope); "
             f"'{LINEAR_IN_LOG10_X}': y = intercept + slope*log10 x; x = FLOPs, except "
             f"return_vs_loss where x = 1/loss and y = return"),
    )
    fits["n_opt"].attrs.update(long_name="loss-optimal parameters N_opt")
    fits["d_opt"].attrs.update(long_name="training samples at N_opt (D_opt)")
    fits["l_min"].attrs.update(long_name="minimum held-out loss L_min")
    fits["r_max"].attrs.update(long_name="maximum return R_max")
    fits["n_opt_return"].attrs.update(long_name="return-optimal parameters")
    return fits


def law_fit(fits: xr.Dataset, game: str, quantity: str) -> LineFit | None:
    """The stored fit of one power law (None if it was not fitted), ready for bands."""
    form = str(fits["law_form"].sel(game=game, quantity=quantity).item())
    if form == NOT_FITTED:
        return None
    row = fits["law"].sel(game=game, quantity=quantity)
    return LineFit.from_stats({s: float(row.sel(stat=s)) for s in LAW_STATS}, form)


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


def _format_interval(row: xr.DataArray) -> str:
    lo, hi = float(row.sel(stat="slope_lo")), float(row.sel(stat="slope_hi"))
    return "n/a (< 3 points)" if not np.isfinite(lo) else f"[{lo:.3f}, {hi:.3f}]"


def summary_markdown(fits: xr.Dataset) -> str:
    """A table per game: each law's exponent, 95% interval, budgets used, and the flagged budgets."""
    config = FitConfig.from_attrs(fits.attrs)
    level = f"{100 * config.confidence:g}%"
    lines = ["# Scaling-law fits", "",
             f"Settings: exclude_edge_budgets={config.exclude_edge_budgets}, "
             f"min_sizes_per_budget={config.min_sizes_per_budget}, confidence={config.confidence}.", ""]
    for game in fits["game"].values:
        lines += [f"## {game}", "", f"| law | form | exponent | {level} interval | R² | points used | note |",
                  "|---|---|---|---|---|---|---|"]
        for quantity in LAW_QUANTITIES:
            row = fits["law"].sel(game=game, quantity=quantity)
            form = str(fits["law_form"].sel(game=game, quantity=quantity).item())
            note = str(fits["law_note"].sel(game=game, quantity=quantity).item())
            label = LAW_LABELS[quantity] if form != LINEAR_IN_LOG10_X else "R_max = a + b log10 C"
            if form == NOT_FITTED:
                lines.append(f"| {label} | {form} | – | – | – | 0 | {note} |")
                continue
            lines.append(f"| {label} | {form} | {float(row.sel(stat='slope')):.3f} | {_format_interval(row)} | "
                         f"{float(row.sel(stat='r2')):.3f} | {int(row.sel(stat='n_points'))} | {note} |")
        lines.append("")
        for metric in METRICS:
            status = fits["status"].sel(game=game, metric=metric)
            flagged = [f"{budget_text(c)} ({s})" for c, s in zip(fits["flops"].values, status.values)
                       if str(s).startswith(("edge", "skipped"))]
            lines.append(f"- {metric} profiles, flagged or skipped budgets: {', '.join(flagged) if flagged else 'none'}")
        lines.append("")
    return "\n".join(lines)


def _replace_atomically(path: Path, write) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_fits(results_nc: str | os.PathLike, fits_nc: str | os.PathLike, summary_md: str | os.PathLike,
               config: FitConfig = FitConfig()) -> xr.Dataset:
    """Fit the results file; write the fits NetCDF and the markdown summary atomically."""
    with xr.open_dataset(results_nc) as results:
        fits = fit_results(results.load(), config)
    _replace_atomically(Path(fits_nc), fits.to_netcdf)
    _replace_atomically(Path(summary_md), lambda tmp: tmp.write_text(summary_markdown(fits)))
    return fits
