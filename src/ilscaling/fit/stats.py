"""The fits themselves: OLS lines and parabolas with their covariance, the saturating return law,
and the robust (Huber) loss with the batched IRLS that minimises it for many starts or resamples."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ilscaling.fit.config import LINEAR_IN_LOG10_X, POWER_LAW


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
# Return vs loss, saturating: R = 1 / (a (1/L)^d + b)
# ---------------------------------------------------------------------------------------------

SATURATING_PARAMETERS = ("a", "d", "b")  # R = 1 / (a * (1/L)**d + b)
SATURATING_INFO = ("residual_variance", "dof", "n_points", "n_excluded", "r2", "shift")


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
# Robust loss: Huber on log residuals, minimised by batched IRLS (the surface and the floor law)
# ---------------------------------------------------------------------------------------------

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022; on log loss this is nearly an L1 loss


def logsumexp(terms: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(terms))) along axis, stable; plain numpy (scipy's is ~5x slower on these small arrays)."""
    top = terms.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(terms - top).sum(axis=axis))


def huber(residual: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber loss: quadratic within delta, linear outside."""
    absolute = np.abs(residual)
    return np.where(absolute <= delta, 0.5 * residual**2, delta * (absolute - 0.5 * delta))


def huber_irls(theta, model, target, weights, bounds, delta=HUBER_DELTA, max_iter=100, tol=1e-9):
    """Minimise sum(weights * huber(prediction - target)) for each row of theta (n, p), batched.

    `model(rows)` gives (prediction (m, runs), jacobian (m, runs, p)) for m rows of parameters;
    `target` is (runs,) or one row per theta (n, runs); `weights` is (n, runs); `bounds` one
    (low, high) per parameter. Levenberg-Marquardt on the IRLS normal equations: a step is kept
    only if it lowers that row's objective, otherwise that row's damping grows. Rows stop once a
    kept step improves their objective by less than `tol` (relative), so later iterations only
    touch the rest. Bounds are enforced by clipping.
    """
    theta = np.array(theta, float)
    n_params = theta.shape[1]
    low, high = np.array(bounds, float).T
    target = np.broadcast_to(np.asarray(target, float), weights.shape)

    def objective(rows, w, y):
        return np.sum(w * huber(model(rows)[0] - y, delta), axis=1)

    damping = np.full(len(theta), 1e-3)
    current = objective(theta, weights, target)
    active = np.arange(len(theta))
    for _ in range(max_iter):
        if len(active) == 0:
            break
        rows, w, y = theta[active], weights[active], target[active]
        prediction, jacobian = model(rows)
        residual = prediction - y
        irls = w * np.minimum(1.0, delta / np.maximum(np.abs(residual), 1e-300))
        weighted = jacobian * irls[..., None]
        normal = np.matmul(weighted.transpose(0, 2, 1), jacobian)
        gradient = np.einsum("nri,nr->ni", weighted, residual)
        diagonal = np.einsum("nii->ni", normal)
        damped = normal + (damping[active][:, None] * (diagonal + 1e-12))[:, :, None] * np.eye(n_params)
        try:
            step = np.linalg.solve(damped, gradient[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a term that vanishes on every run (e.g. a resample of one size)
            step = (np.linalg.pinv(damped) @ gradient[..., None])[..., 0]
        candidate = np.clip(rows - step, low, high)
        trial = objective(candidate, w, y)
        better = trial < current[active]
        converged = (better & (current[active] - trial <= tol * current[active])) | (damping[active] > 1e10)
        theta[active[better]], current[active[better]] = candidate[better], trial[better]
        damping[active] = np.where(better, damping[active] / 3.0, damping[active] * 4.0)
        active = active[~converged]
    return theta
