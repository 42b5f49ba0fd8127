"""What a fit is asked to do (FitConfig) and the names of what it produces (the coordinates of fits.nc)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

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
NEGATIVE_RETURN_MODES = ("exclude", "shift")
# Saturating loss law L_min(C) = E + A C^b (fit.floor) of the per-budget optima, beside the pure law.
FLOOR_METHODS = ("raw", "vertex")
FLOOR_INFO = ("n_points", "huber_objective", "n_bootstrap", "n_bootstrap_usable", "log_residual_sd",
              "cv_folds", "cv_rmse", "holdout_n", "holdout_rmse", "holdout_max_abs_error")
MIN_CV_FOLDS_TO_COMPARE = 2  # fewer one-step-ahead folds cannot tell the pure and saturating laws apart
LOSS_METRICS = {"cross_entropy": "loss", "kl": "kl"}  # fit.loss_metric -> the results variable holding it

# Per-budget variables of the fits Dataset, dims (game, flops), all float.
LOSS_BUDGET_VARIABLES = ("n_opt", "n_opt_lo", "n_opt_hi", "l_min", "l_min_lo", "l_min_hi",
                         "d_opt", "d_opt_lo", "d_opt_hi")
RETURN_BUDGET_VARIABLES = ("r_max", "r_max_lo", "r_max_hi", "n_opt_return", "n_opt_return_lo",
                           "n_opt_return_hi")


@dataclass(frozen=True)
class FitConfig:
    """How isoFLOP profiles feed the power laws (the study config's `fit` section, and C* per game)."""

    exclude_edge_budgets: bool = True
    """Keep a budget whose optimum lies at the grid's edge out of the power laws: it is censored (the
    true optimum lies beyond). It is still shown and listed."""
    min_sizes_per_budget: int = 3
    """Budgets with fewer evaluated sizes are skipped (vertex method)."""
    confidence: float = 0.95
    """Level of every interval and band."""
    vertex_window_dex: float = 0.0
    """Fit each parabola only within this many decades of the raw optimum; 0: all sizes (on the
    authors' Atari data and on noisy synthetic sweeps a window raised the exponents' variance more
    than it removed the parabola's bias)."""
    holdout_budgets: int = 1
    """Refit without the largest k budgets and predict them."""
    forecast_budget: float = 0.0
    """Target budget C* of the forecast, every game; 0: forecast_factor x its largest budget."""
    forecast_factor: float = 10.0
    """C* = this x each game's largest budget (where forecast_budget is 0)."""
    forecast_budgets: dict[str, float] = dataclasses.field(default_factory=dict)
    """C* per game, FLOPs (the workflow's: the forecast section's); overrides the two above."""
    negative_returns: str = "exclude"
    """Returns <= 0 in log fits: exclude them, or shift all returns."""
    bootstrap: int = 1000
    """Resamples of the parametric fit L(N, D) and of the saturating loss law E + A C^b."""
    bootstrap_seed: int = 0
    """Seeds the resamples."""
    loss_metric: str = "cross_entropy"
    """The loss fitted: cross_entropy (recorded actions) or kl (the expert's policy, where stored)."""

    def __post_init__(self):
        for field in dataclasses.fields(self):  # a YAML or JSON 0 where a float is meant is 0.0 (fits.nc records it)
            if field.type == "float" and isinstance(getattr(self, field.name), int):
                object.__setattr__(self, field.name, float(getattr(self, field.name)))
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
        for game, budget in self.forecast_budgets.items():
            if not isinstance(budget, (int, float)) or not budget > 0 or not np.isfinite(budget):
                raise ValueError(f"forecast_budgets: {game}: {budget!r} is not a positive number of FLOPs")
        if self.negative_returns not in NEGATIVE_RETURN_MODES:
            raise ValueError(f"negative_returns must be one of {NEGATIVE_RETURN_MODES}, got {self.negative_returns!r}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.loss_metric not in LOSS_METRICS:
            raise ValueError(f"loss_metric must be one of {tuple(LOSS_METRICS)}, got {self.loss_metric!r}")

    def forecast_budget_of(self, game: str, largest_budget: float) -> float:
        """C* of one game: its own budget, else forecast_budget, else forecast_factor x its largest budget."""
        return self.forecast_budgets.get(game) or self.forecast_budget or self.forecast_factor * largest_budget

    def to_attrs(self) -> dict:
        """NetCDF attributes (no booleans there, so flags become 0/1; C* per game as Game=FLOPs,...)."""
        return {f"config_{k}": int(v) if isinstance(v, bool) else
                ",".join(f"{game}={float(c)!r}" for game, c in v.items()) if isinstance(v, dict) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs: dict) -> FitConfig:
        """The config a fits Dataset was made with (inverse of `to_attrs`)."""
        values = {}
        for field in dataclasses.fields(cls):
            key = f"config_{field.name}"
            if key in attrs:
                value = attrs[key].item() if hasattr(attrs[key], "item") else attrs[key]
                if field.name == "forecast_budgets":
                    pairs = (item.split("=") for item in str(value).split(",") if item)
                    values[field.name] = {game: float(budget) for game, budget in pairs}
                else:
                    values[field.name] = type(field.default)(value)
        return cls(**values)
