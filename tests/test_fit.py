"""Fits of isoFLOP profiles and power laws on synthetic sweeps with known answers (ilscaling.fit)."""

import numpy as np
import pytest
import xarray as xr
from sweeps import BUDGETS, CHINCHILLA, law, law_of, pure_law_results, synthetic_results, with_kl

from ilscaling.fit import (
    LINEAR_IN_LOG10_X, NOT_FITTED, POWER_LAW, FitConfig, fit_results, law_fit, summary_markdown, write_fits,
)
from ilscaling.fit.profiles import profile_optimum
from ilscaling.fit.stats import fit_line, fit_quadratic


# --- isoFLOP profiles and power laws --------------------------------------------------------

def test_chinchilla_n_opt_exponent_matches_analytic():
    fits = fit_results(synthetic_results())
    expected = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    assert law(fits, "n_opt", "slope") == pytest.approx(expected, abs=0.005)
    # D = C/(6N) at fixed compute, so the two exponents add up to one.
    assert law(fits, "d_opt", "slope") == pytest.approx(1 - expected, abs=0.005)
    assert (fits["status"].sel(metric="loss") == "vertex").all()
    assert fits["used_in_fit"].all()
    assert law(fits, "n_opt", "n_points") == len(BUDGETS)


def test_pure_power_law_recovered_exactly():
    fits = fit_results(pure_law_results())
    assert law(fits, "n_opt", "slope") == pytest.approx(0.6, abs=1e-8)
    assert law(fits, "n_opt", "intercept") == pytest.approx(np.log10(0.3), abs=1e-7)
    assert law(fits, "l_min", "slope") == pytest.approx(-0.05, abs=1e-8)
    assert law(fits, "d_opt", "slope") == pytest.approx(0.4, abs=1e-8)
    budgets = fits["flops"].values
    np.testing.assert_allclose(fits["n_opt"].sel(game="Synth"), 0.3 * budgets**0.6, rtol=1e-7)
    # samples = C/(6N) is a straight line in log-log space, so the interpolation is exact too.
    np.testing.assert_allclose(fits["d_opt"].sel(game="Synth"), budgets / (6 * 0.3 * budgets**0.6), rtol=1e-7)
    fit = law_fit(fits, "Synth", "n_opt")
    np.testing.assert_allclose(fit.predict([1e20]), 0.3 * 1e20**0.6, rtol=1e-6)


def test_intervals_contain_the_true_values():
    fits = fit_results(pure_law_results(noise=0.02, seeds=3))
    assert law(fits, "n_opt", "slope_lo") < 0.6 < law(fits, "n_opt", "slope_hi")
    assert law(fits, "l_min", "slope_lo") < -0.05 < law(fits, "l_min", "slope_hi")
    true_n_opt = 0.3 * fits["flops"].values ** 0.6
    inside = (fits["n_opt_lo"].sel(game="Synth") < true_n_opt) & (true_n_opt < fits["n_opt_hi"].sel(game="Synth"))
    assert inside.mean() >= 0.8
    assert (fits["d_opt_lo"] <= fits["d_opt"]).all() and (fits["d_opt"] <= fits["d_opt_hi"]).all()


def test_line_and_vertex_intervals_have_nominal_coverage():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e10, 1e14, 6)
    line_hits = vertex_hits = 0
    replicates = 400
    log_n = np.linspace(5, 7, 7)
    for _ in range(replicates):
        y = 2.0 * x**0.5 * 10 ** (0.05 * rng.standard_normal(len(x)))
        stats = fit_line(x, y).to_stats(0.95)
        line_hits += stats["slope_lo"] < 0.5 < stats["slope_hi"]
        profile = 0.2 * (log_n - 6.2) ** 2 + 0.01 * rng.standard_normal(len(log_n))
        optimum = profile_optimum(log_n, profile, maximize=False, confidence=0.95)
        vertex_hits += optimum.x_lo < 6.2 < optimum.x_hi
    assert 0.92 <= line_hits / replicates <= 0.98
    assert 0.88 <= vertex_hits / replicates <= 0.99


def test_bands_prediction_wider_than_confidence_and_nan_without_dof():
    x = np.geomspace(1e10, 1e14, 5)
    fit = fit_line(x, 3 * x**0.4 * np.array([1.01, 0.98, 1.02, 0.99, 1.0]))
    query = np.geomspace(1e9, 1e16, 9)
    c_lo, c_hi = fit.confidence_band(query)
    p_lo, p_hi = fit.prediction_band(query)
    assert np.all(p_lo < c_lo) and np.all(c_lo < fit.predict(query)) and np.all(c_hi < p_hi)
    two = fit_line(x[:2], 3 * x[:2] ** 0.4)
    assert two.slope == pytest.approx(0.4) and np.isnan(two.to_stats(0.95)["slope_lo"])


def test_two_budgets_fit_without_intervals():
    fits = fit_results(pure_law_results(budgets=(1e15, 1e17)))
    assert law(fits, "n_opt", "slope") == pytest.approx(0.6, abs=1e-8)
    assert np.isnan(law(fits, "n_opt", "slope_lo"))


def test_edge_budgets_are_flagged_excluded_by_default_and_can_be_kept():
    centred = synthetic_results(noise=0.005)
    shifted = synthetic_results(noise=0.005, offset_dex=0.8)  # the grid misses the optimum
    results = xr.where(centred["flops"] >= 2e17, shifted, centred)
    assert FitConfig().exclude_edge_budgets
    fits = fit_results(results, FitConfig(exclude_edge_budgets=False))
    edge = fits["edge"].sel(game="Synth", metric="loss").values
    np.testing.assert_array_equal(edge, results["flops"].values >= 2e17)
    assert all("outside the evaluated sizes" in s for s in fits["status"].sel(game="Synth", metric="loss").values[edge])
    assert np.isnan(fits["n_opt_lo"].sel(game="Synth").values[edge]).all()
    # The raw argmin of the seed-mean loss stands in for the vertex.
    mean_loss = results["loss"].sel(game="Synth").mean("seed")
    raw = mean_loss["params"].values[np.nanargmin(mean_loss.values, axis=1)]
    np.testing.assert_allclose(fits["n_opt"].sel(game="Synth").values[edge], raw[edge])
    assert fits["used_in_fit"].sel(metric="loss").all()
    assert law(fits, "n_opt", "n_points") == len(BUDGETS)

    excluded = fit_results(results)
    np.testing.assert_array_equal(excluded["used_in_fit"].sel(game="Synth", metric="loss").values, ~edge)
    assert law(excluded, "n_opt", "n_points") == (~edge).sum()
    expected = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    assert abs(law(excluded, "n_opt", "slope") - expected) < abs(law(fits, "n_opt", "slope") - expected)


def test_non_convex_profile_is_an_edge():
    optimum = profile_optimum(np.linspace(5, 7, 5), -0.1 * (np.linspace(5, 7, 5) - 6) ** 2, maximize=False,
                              confidence=0.95)
    assert optimum.edge and "not convex" in optimum.status and np.isnan(optimum.x_lo)


def test_budgets_with_too_few_sizes_are_skipped_with_a_reason():
    results = synthetic_results()
    thin = results["loss"].sel(flops=1e15).notnull()
    keep_two = thin & (thin.cumsum("params") <= 2)  # only two sizes left at 1e15
    results["loss"] = results["loss"].where((results["flops"] != 1e15) | keep_two)
    fits = fit_results(results)
    status = str(fits["status"].sel(game="Synth", flops=1e15, metric="loss").item())
    assert status.startswith("skipped: 2 sizes < min_sizes_per_budget=3")
    assert bool(fits["skipped"].sel(game="Synth", flops=1e15, metric="loss"))
    assert not bool(fits["used_in_fit"].sel(game="Synth", flops=1e15, metric="loss"))
    assert law(fits, "n_opt", "n_points") == len(BUDGETS) - 1
    none = fit_results(synthetic_results(sizes_per_budget=5), FitConfig(min_sizes_per_budget=6, bootstrap=0))
    assert str(none["law_note"].sel(game="Synth", quantity="n_opt").item()) == (
        f"not fitted: 0 budgets with a usable loss optimum; {len(BUDGETS)} budgets skipped (fewer sizes than "
        "min_sizes_per_budget)")


def test_negative_returns_switch_r_max_form_and_are_excluded_from_return_vs_loss():
    results = synthetic_results(return_offset=-4.5)
    fits = fit_results(results)
    assert str(fits["law_form"].sel(game="Synth", quantity="r_max").item()) == LINEAR_IN_LOG10_X
    mean_returns = results["return"].mean("seed")
    n_nonpositive = int((mean_returns <= 0).sum())
    assert 0 < n_nonpositive < int(mean_returns.notnull().sum())
    assert law(fits, "return_vs_loss", "n_excluded") == n_nonpositive
    assert law(fits, "return_vs_loss", "n_points") == int((mean_returns > 0).sum())

    all_negative = fit_results(synthetic_results(return_offset=-100))
    assert str(all_negative["law_form"].sel(game="Synth", quantity="return_vs_loss").item()) == NOT_FITTED
    assert law_fit(all_negative, "Synth", "return_vs_loss") is None
    assert str(fits["law_form"].sel(game="Synth", quantity="n_opt").item()) == POWER_LAW


# --- bad inputs -------------------------------------------------------------------------------

def test_empty_dataset_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        fit_results(synthetic_results().isel(game=slice(0, 0)))


def test_single_budget_is_rejected_naming_the_game():
    with pytest.raises(ValueError, match=r"game 'Synth'.*single compute budget"):
        fit_results(synthetic_results(budgets=(1e16,)))


def test_non_positive_loss_is_rejected_naming_the_game():
    results = synthetic_results(games=("A", "B"))
    results["loss"][1, 2, 40, 0] = 0.0
    with pytest.raises(ValueError, match=r"game 'B'.*non-positive loss"):
        fit_results(results)


def test_all_nan_game_is_rejected_naming_the_game():
    results = synthetic_results(games=("A", "B"))
    results["loss"].loc[{"game": "B"}] = np.nan
    results["return"].loc[{"game": "B"}] = np.nan
    with pytest.raises(ValueError, match=r"game 'B'.*NaN"):
        fit_results(results)


def test_return_only_game_fits_its_return_laws_and_says_why_not_the_rest():
    results = synthetic_results(games=("A", "B"))
    results["loss"].loc[{"game": "B"}] = np.nan
    fits = fit_results(results, FitConfig(bootstrap=0))
    where = {"game": "B", "method": "raw", "fit_set": "all"}
    assert "no loss values" in str(fits["law_notes"].sel({**where, "quantity": "n_opt"}).item())
    assert np.isfinite(float(fits["laws"].sel({**where, "quantity": "r_max", "stat": "slope"})))
    assert "no loss values" in str(fits["parametric_note"].sel(game="B").item())


def test_missing_variable_is_rejected():
    with pytest.raises(ValueError, match="samples"):
        fit_results(synthetic_results().drop_vars("samples"))


def test_fit_config_validates():
    with pytest.raises(ValueError, match="min_sizes_per_budget"):
        FitConfig(min_sizes_per_budget=2)
    with pytest.raises(ValueError, match="loss_metric must be one of .*'kl'.*got 'KL'"):
        FitConfig(loss_metric="KL")
    with pytest.raises(ValueError, match=r"negative_returns must be one of \('exclude', 'shift'\), got 'drop'"):
        FitConfig(negative_returns="drop")  # was unreachable, after a return: a bad value behaved as exclude
    with pytest.raises(ValueError, match="bootstrap must be >= 0, got -1"):
        FitConfig(bootstrap=-1)


@pytest.mark.parametrize("setting, message", [
    ('{"negative_returns": "drop"}', "negative_returns must be one of"),
    ('{"bootstrap": -1}', "bootstrap must be >= 0"),
])
def test_fit_command_rejects_a_bad_setting_by_name(tmp_path, setting, message):
    """`ilscaling fit` stops on the setting before it reads or writes anything."""
    from ilscaling.cli import main

    synthetic_results().to_netcdf(tmp_path / "results.nc")
    with pytest.raises(ValueError, match=message):
        main(["fit", "--results", str(tmp_path / "results.nc"), "--out-nc", str(tmp_path / "fits.nc"),
              "--summary", str(tmp_path / "summary.md"), "--spec", setting])
    assert not (tmp_path / "fits.nc").exists()


# --- the loss metric: cross entropy or KL ------------------------------------------------------


def test_fits_with_loss_metric_kl_fit_the_kl_and_record_it():
    results = with_kl(pure_law_results())
    fits = fit_results(results, FitConfig(bootstrap=0, loss_metric="kl"))
    assert str(fits["loss_metric"].sel(game="Synth").item()) == "kl"
    assert FitConfig.from_attrs(fits.attrs).loss_metric == "kl"
    # The KL is the pure law (L_min = 20 C^-0.05); its cross entropy, on a floor of 1.5, is nearly flat.
    assert law(fits, "l_min", "slope") == pytest.approx(-0.05, abs=1e-9)
    on_kl = fit_results(results.assign(loss=results["kl"]), FitConfig(bootstrap=0))
    xr.testing.assert_allclose(fits["law"], on_kl["law"])
    cross_entropy = fit_results(results, FitConfig(bootstrap=0))
    assert str(cross_entropy["loss_metric"].sel(game="Synth").item()) == "cross_entropy"
    assert -0.05 < law(cross_entropy, "l_min", "slope") < -0.001
    assert "Loss fitted (L in every loss law, L_min and return vs loss): **KL(expert ‖ BC)**" in summary_markdown(fits)


def test_a_game_without_kl_is_fitted_on_cross_entropy_and_says_so():
    results = with_kl(pure_law_results(games=("Atari", "NetHack")), games=["Atari"])
    fits = fit_results(results, FitConfig(bootstrap=0, loss_metric="kl"))
    assert list(fits["loss_metric"].values) == ["kl", "cross_entropy"]
    assert law(fits, "l_min", "slope", "Atari") == pytest.approx(-0.05, abs=1e-9)
    alone = fit_results(results.sel(game=["NetHack"]), FitConfig(bootstrap=0))
    assert law(fits, "l_min", "slope", "NetHack") == law(alone, "l_min", "slope", "NetHack")
    summary = summary_markdown(fits)
    assert "**cross entropy**" in summary and "fit.loss_metric = kl, but this game has no finite kl values" in summary
    # Results without a kl variable at all (published sets written before it): cross entropy too.
    bare = fit_results(results.drop_vars("kl"), FitConfig(bootstrap=0, loss_metric="kl"))
    assert set(bare["loss_metric"].values) == {"cross_entropy"}


def test_a_non_positive_kl_is_rejected_naming_the_game_and_metric():
    results = with_kl(pure_law_results(games=("A", "B")))
    results["kl"][1, 2, 40, 0] = 0.0
    with pytest.raises(ValueError, match=r"game 'B': non-positive loss values \(KL\(expert ‖ BC\)"):
        fit_results(results, FitConfig(bootstrap=0, loss_metric="kl"))
    fit_results(results, FitConfig(bootstrap=0))  # its cross entropy is fine


# --- files ------------------------------------------------------------------------------------

def test_write_fits_round_trips_and_summarises(tmp_path):
    results = synthetic_results(games=("Alpha", "Beta"), noise=0.01, return_offset=-4.5)
    results.to_netcdf(tmp_path / "results.nc")
    config = FitConfig(exclude_edge_budgets=True, min_sizes_per_budget=4)
    fits = write_fits(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "summary.md", config)
    stored = xr.load_dataset(tmp_path / "fits.nc")
    assert FitConfig.from_attrs(stored.attrs) == config
    xr.testing.assert_allclose(stored["law"], fits["law"])
    assert stored["quad_coef"].dims == ("game", "flops", "metric", "power")
    assert stored["edge"].dtype == bool
    query = np.geomspace(1e14, 1e20, 5)
    np.testing.assert_allclose(law_fit(stored, "Beta", "n_opt").confidence_band(query),
                               law_fit(fits, "Beta", "n_opt").confidence_band(query))
    summary = (tmp_path / "summary.md").read_text()
    assert "## Alpha" in summary and "## Beta" in summary
    assert f"{law(fits, 'n_opt', 'slope', 'Alpha'):.3f}" in summary
    assert "points with return <= 0 excluded" in summary
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_write_fits_leaves_no_output_on_error(tmp_path):
    synthetic_results(budgets=(1e16,)).to_netcdf(tmp_path / "results.nc")
    with pytest.raises(ValueError, match="single compute budget"):
        write_fits(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "summary.md")
    assert not (tmp_path / "fits.nc").exists()


def test_fit_quadratic_needs_three_points():
    with pytest.raises(ValueError, match="at least 3"):
        fit_quadratic([1.0, 2.0], [1.0, 2.0])


# --- raw optima, cross-validation, holdout, forecast ---------------------------------------------


def test_raw_optimum_is_the_best_evaluated_size_and_its_own_samples():
    results = synthetic_results(noise=0.01)
    fits = fit_results(results, FitConfig(bootstrap=0))
    mean = results.mean("seed").sel(game="Synth")
    best = np.nanargmin(mean["loss"].values, axis=1)
    rows = np.arange(len(BUDGETS))
    np.testing.assert_allclose(fits["raw_n_opt"].sel(game="Synth"), mean["params"].values[best])
    np.testing.assert_allclose(fits["raw_l_min"].sel(game="Synth"), mean["loss"].values[rows, best])
    np.testing.assert_allclose(fits["raw_d_opt"].sel(game="Synth"), mean["samples"].values[rows, best])
    expected = np.polyfit(np.log10(BUDGETS), np.log10(mean["params"].values[best]), 1)[0]
    assert law_of(fits, "raw", "n_opt", "slope") == pytest.approx(expected, abs=1e-10)


def test_cross_validation_and_holdout_of_an_exact_law_are_perfect():
    fits = fit_results(pure_law_results(), FitConfig(bootstrap=0, holdout_budgets=2))
    assert law_of(fits, "vertex", "n_opt", "cv_folds") == len(BUDGETS) - 3
    assert law_of(fits, "vertex", "n_opt", "cv_rmse") < 1e-8
    assert law_of(fits, "vertex", "n_opt", "holdout_n") == 2
    assert law_of(fits, "vertex", "n_opt", "holdout_rmse") < 1e-8
    assert law_of(fits, "vertex", "n_opt", "slope", fit_set="holdout") == pytest.approx(0.6, abs=1e-8)
    held = fits["held_out"].sel({"game": "Synth", "method": "vertex", "metric": "loss"}).values
    np.testing.assert_array_equal(held, np.isin(BUDGETS, BUDGETS[-2:]))
    forecast = fits["forecast"].sel({"game": "Synth", "method": "vertex", "target": "n_opt"})
    assert float(fits["forecast_budget"].sel(game="Synth")) == 10 * max(BUDGETS)
    assert float(forecast.sel(bound="value")) == pytest.approx(0.3 * (10 * max(BUDGETS)) ** 0.6, rel=1e-6)


def test_noisy_cross_validation_coverage_is_reported():
    fits = fit_results(pure_law_results(noise=0.02, rng_seed=3), FitConfig(bootstrap=0))
    coverage = law_of(fits, "vertex", "l_min", "cv_coverage")
    assert 0.0 <= coverage <= 1.0 and law_of(fits, "vertex", "l_min", "cv_rmse") > 0


def test_vertex_window_keeps_only_nearby_sizes():
    results = synthetic_results(sizes_per_budget=15, noise=0.002)
    fits = fit_results(results, FitConfig(bootstrap=0, vertex_window_dex=0.3))
    status = fits["status"].sel(game="Synth", metric="loss").values
    assert all("window ±0.3 dex" in s for s in status)
    span = fits["quad_log10n_max"] - fits["quad_log10n_min"]
    assert float(span.sel(metric="loss").max()) <= 0.6 + 1e-9


def test_shifted_negative_returns_are_kept_and_recorded():
    results = synthetic_results(return_offset=-4.5)
    fits = fit_results(results, FitConfig(bootstrap=0, negative_returns="shift"))
    shift = float(fits["return_shift"].sel(game="Synth"))
    assert shift == pytest.approx(1 - float(results["return"].mean("seed").min()))
    assert law_of(fits, "vertex", "return_vs_loss", "n_excluded") == 0
    assert str(fits["law_forms"].sel({"game": "Synth", "method": "vertex", "fit_set": "all",
                                      "quantity": "r_max"}).item()) == POWER_LAW
    assert "shifted" in summary_markdown(fits)


def test_saturating_return_vs_loss_recovers_its_parameters():
    from ilscaling.fit.stats import fit_line, fit_saturating

    rng = np.random.default_rng(0)
    x = np.geomspace(1.0, 20.0, 60)
    r = 1.0 / (0.5 * x**-1.5 + 0.01) * np.exp(0.01 * rng.standard_normal(len(x)))
    fit = fit_saturating(x, r, n_excluded=0, shift=0.0, start=fit_line(x, r))
    table = fit.intervals(0.95)
    for k, truth in enumerate((0.5, -1.5, 0.01)):
        assert table[k, 1] <= truth <= table[k, 2]


def test_a_grid_above_every_optimum_leaves_the_loss_laws_unfitted_not_the_study_failed():
    """Every budget's optimum below its smallest size (the default NetHack study of 2026-11-29):
    with edge budgets excluded no loss law has two budgets; the fit says so instead of raising."""
    results = synthetic_results(offset_dex=2.0, sizes_per_budget=5)
    fits = fit_results(results, FitConfig(bootstrap=0, exclude_edge_budgets=True))
    for method in ("raw", "vertex"):
        for quantity in ("n_opt", "d_opt", "l_min"):
            where = {"game": "Synth", "method": method, "fit_set": "all", "quantity": quantity}
            note = str(fits["law_notes"].sel(where).item())
            assert note.startswith("not fitted: 0 budgets with a usable loss optimum; ") and "at the grid's edge" in note
            assert np.isnan(fits["laws"].sel(where).sel(stat="slope"))
    assert bool(fits["edge"].sel(game="Synth", metric="loss").all())
    assert "not fitted" in summary_markdown(fits)
