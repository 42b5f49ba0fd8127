"""The parametric surface L(N, D) and the saturating loss law E + A C^b (ilscaling.fit.parametric, .floor)."""

import numpy as np
import pytest
from sweeps import BUDGETS, CHINCHILLA, law_of, pure_law_results, synthetic_results

from ilscaling.fit import FitConfig, fit_results, summary_markdown


# --- parametric fit -------------------------------------------------------------------------------

def test_parametric_fit_recovers_chinchilla_exponents_with_bootstrap_intervals():
    from ilscaling.fit.parametric import fit_parametric

    results = synthetic_results(noise=0.003, seeds=1).sel(game="Synth", seed=0)
    table = results[["loss", "samples"]].to_dataframe().dropna()
    fit = fit_parametric(table.index.get_level_values("params"), table["samples"], table["loss"], n_bootstrap=200)
    params, intervals = fit.parameters, fit.parameter_intervals(0.95)
    assert params["alpha"] == pytest.approx(CHINCHILLA["alpha"], abs=0.03)
    assert params["beta"] == pytest.approx(CHINCHILLA["beta"], abs=0.03)
    assert intervals[3, 0] < params["alpha"] < intervals[3, 1]
    assert fit.at_bounds == ""


def test_parametric_fit_names_the_parameters_the_data_leave_on_a_bound():
    """Losses that do not depend on N (as NetHack's default sweep, where the smallest width wins at
    every budget): A goes to its lower bound and alpha to its upper, and the fit says so."""
    from ilscaling.fit.parametric import fit_parametric

    rng = np.random.default_rng(0)
    params, samples = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 30)), np.exp(rng.uniform(np.log(1e5), np.log(1e8), 30))
    fit = fit_parametric(params, samples, 20 * samples**-0.2 * np.exp(rng.normal(0, 0.01, 30)), n_bootstrap=0)
    assert fit.at_bounds == "A (lower); alpha (upper)"
    assert fit.parameters["beta"] == pytest.approx(0.2, abs=0.01)


def test_batched_irls_reaches_the_lbfgs_optimum():
    from ilscaling.fit.parametric import _batch_objective, _polish, fit_parametric, irls_batch

    results = synthetic_results(noise=0.01, seeds=1).sel(game="Synth", seed=0)
    table = results[["loss", "samples"]].to_dataframe().dropna()
    n, d, loss = np.log(table.index.get_level_values("params").values.astype(float)), np.log(table["samples"].values), \
        np.log(table["loss"].values)
    fit = fit_parametric(np.exp(n), np.exp(d), np.exp(loss), n_bootstrap=0)
    weights = np.random.default_rng(1).multinomial(len(n), np.ones(len(n)) / len(n)).astype(float)
    _, lbfgs = _polish(fit.theta, n, d, loss, weights, 1e-3)
    irls = irls_batch(fit.theta[None], n, d, loss, weights[None])
    assert float(_batch_objective(irls, n, d, loss, weights[None], 1e-3)[0]) <= lbfgs * (1 + 1e-6)


def test_parametric_allocation_uses_the_flops_per_sample_of_the_runs():
    # Runs cost 6N FLOPs per sample, so N*(C) has the analytic Chinchilla exponent beta / (alpha + beta).
    fits = fit_results(synthetic_results(noise=0.002), FitConfig(bootstrap=50))
    expected = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    assert law_of(fits, "parametric", "n_opt", "slope") == pytest.approx(expected, abs=0.03)
    assert law_of(fits, "parametric", "n_opt", "slope_lo") < law_of(fits, "parametric", "n_opt", "slope_hi")
    forecast = fits["forecast"].sel({"game": "Synth", "method": "parametric", "target": "l_min"}).values
    assert forecast[1] < forecast[0] < forecast[2]


# --- saturating loss law L_min(C) = E + A C^b ---------------------------------------------------------

def floor_of(fits, method, param, bound="value", game="Synth"):
    return float(fits["floor_law"].sel(game=game, floor_method=method, floor_param=param, bound=bound))


def floor_info_of(fits, method, stat, game="Synth"):
    return float(fits["floor_info"].sel(game=game, floor_method=method, floor_stat=stat))


def test_floor_law_recovers_known_parameters_within_its_intervals():
    from ilscaling.fit.floor import fit_floor_law

    budgets = np.geomspace(1e15, 1e18, 10)
    truth = {"E": 0.5, "A": 200.0, "b": -0.2}
    loss = (truth["E"] + truth["A"] * budgets**truth["b"]) * np.exp(0.01 * np.random.default_rng(0).standard_normal(10))
    fit = fit_floor_law(budgets, loss, n_bootstrap=500, seed=0)
    table = fit.parameter_table(0.95)
    for k, name in enumerate(("E", "A", "b")):
        assert table[k, 1] <= truth[name] <= table[k, 2], name
    assert len(fit.bootstrap) == fit.n_bootstrap == 500
    lo, hi = fit.prediction_interval(1e19, 0.95, seed=1)
    assert lo < truth["E"] + truth["A"] * 1e19**truth["b"] < hi


def test_floor_law_of_chinchilla_optima_recovers_the_analytic_law():
    # On C = 6ND the Chinchilla surface's optima follow E + A' C^b exactly, b = -alpha beta / (alpha + beta).
    E, A, B, alpha, beta = (CHINCHILLA[k] for k in ("E", "A", "B", "alpha", "beta"))
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    b = -alpha * beta / (alpha + beta)
    prefactor = (A * g**-alpha + B * g**beta) * 6.0**-b
    fits = fit_results(synthetic_results(noise=0.01), FitConfig(bootstrap=300))
    for name, truth in (("E", E), ("A", prefactor), ("b", b)):
        assert floor_of(fits, "vertex", name, "lo") <= truth <= floor_of(fits, "vertex", name, "hi"), name
    assert floor_info_of(fits, "vertex", "n_bootstrap_usable") == 300
    # Same budgets and folds as the pure law, so the two CV errors compare; here the floor is real and wins.
    assert floor_info_of(fits, "vertex", "cv_folds") == law_of(fits, "vertex", "l_min", "cv_folds") == len(BUDGETS) - 3
    assert floor_info_of(fits, "vertex", "cv_rmse") < law_of(fits, "vertex", "l_min", "cv_rmse")
    assert "E + A C^b cross-validates better" in summary_markdown(fits)
    forecast = fits["floor_forecast"].sel(game="Synth", floor_method="vertex").values
    true_loss = E + prefactor * (10 * max(BUDGETS)) ** b
    assert forecast[1] < true_loss < forecast[2]


def test_floor_interval_of_a_pure_power_law_reaches_zero():
    fits = fit_results(pure_law_results(noise=0.002, rng_seed=1), FitConfig(bootstrap=300))
    lowest = float(fits["l_min"].sel(game="Synth").min())
    assert floor_of(fits, "vertex", "E", "lo") < 1e-3 * lowest
    # E >= 0 bounds the resamples on one side, so b's interval is one-sided too; the point value is the pure law's.
    assert floor_of(fits, "vertex", "b") == pytest.approx(-0.05, abs=1e-3)


def test_floor_law_is_deterministic_under_its_seed():
    results = synthetic_results(noise=0.01)
    first, second = (fit_results(results, FitConfig(bootstrap=100, bootstrap_seed=7)) for _ in range(2))
    for name in ("floor_law", "floor_info", "floor_forecast"):
        np.testing.assert_array_equal(first[name].values, second[name].values)
    other = fit_results(results, FitConfig(bootstrap=100, bootstrap_seed=8))
    assert floor_of(other, "vertex", "E", "lo") != floor_of(first, "vertex", "E", "lo")
    assert floor_of(other, "vertex", "E") == floor_of(first, "vertex", "E")  # the point fit has no randomness


def test_floor_law_with_few_budgets_says_so():
    three = fit_results(pure_law_results(budgets=(1e15, 1e16, 1e17)), FitConfig(bootstrap=50))
    assert np.isfinite(floor_of(three, "vertex", "E")) and np.isnan(floor_of(three, "vertex", "E", "lo"))
    assert "exact fit, no intervals" in str(three["floor_note"].sel(game="Synth", floor_method="vertex").item())
    assert "too few budgets to tell" in summary_markdown(three)
    two = fit_results(pure_law_results(budgets=(1e15, 1e17)), FitConfig(bootstrap=50))
    assert "not fitted: 2 budgets (need 3)" in str(two["floor_note"].sel(game="Synth", floor_method="raw").item())
    with pytest.raises(ValueError, match="at least 3 budgets"):
        from ilscaling.fit.floor import fit_floor_law
        fit_floor_law([1e15, 1e16], [2.0, 1.0])


def test_floor_law_on_the_authors_atari_data():
    from pathlib import Path

    from ilscaling.published import read_published

    published = Path(__file__).resolve().parents[1].parent / "shared" / "published" / "atari"
    if not published.is_dir():
        pytest.skip(f"the authors' Atari data is not at {published}")
    fits = fit_results(read_published(published), FitConfig(bootstrap=100))
    fitted = 0
    for game in map(str, fits["game"].values):
        for method in ("raw", "vertex"):
            if not np.isfinite(floor_of(fits, method, "E", game=game)):
                assert "no loss values" in str(fits["floor_note"].sel(game=game, floor_method=method).item())
                continue
            fitted += 1
            assert floor_info_of(fits, method, "n_points", game) == law_of(fits, method, "l_min", "n_points", game=game)
            assert floor_info_of(fits, method, "cv_folds", game) == law_of(fits, method, "l_min", "cv_folds", game=game)
            assert 0 < floor_info_of(fits, method, "n_bootstrap_usable", game) <= 100
            # The floor lies below every optimum the law was fitted to, and the exponent is negative.
            assert floor_of(fits, method, "E", game=game) < float(fits["raw_l_min"].sel(game=game).min())
            assert floor_of(fits, method, "b", "hi", game) < 0
    assert fitted == 12  # six games with losses, two methods
