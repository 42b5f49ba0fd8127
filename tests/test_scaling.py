"""Fits of isoFLOP profiles and power laws on synthetic sweeps with known answers."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ilscaling.fit import (
    LINEAR_IN_LOG10_X, NOT_FITTED, POWER_LAW, FitConfig, fit_results, law_fit, summary_markdown, write_fits,
)
from ilscaling.fit.profiles import profile_optimum
from ilscaling.fit.stats import fit_line, fit_quadratic

# Chinchilla's fitted constants (Hoffmann et al. 2022): L(N, D) = E + A/N**alpha + B/D**beta.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
BUDGETS = (1e15, 2e15, 5e15, 1e16, 2e16, 5e16, 1e17, 2e17, 5e17, 1e18)
PARAM_GRID = np.unique(np.round(10 ** np.arange(3.0, 11.0, 0.125)).astype(np.int64))


def chinchilla_n_opt(budget, E, A, B, alpha, beta):
    """Analytic minimiser of L(N, C/(6N)) over N: G * (C/6)**(beta/(alpha+beta))."""
    return (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (budget / 6) ** (beta / (alpha + beta))


def chinchilla_loss(params, samples, E, A, B, alpha, beta):
    return E + A / params**alpha + B / samples**beta


def synthetic_results(games=("Synth",), budgets=BUDGETS, *, sizes_per_budget=9, offset_dex=0.0,
                      noise=0.0, seeds=2, return_scale=100.0, return_exponent=2.0, return_offset=0.0,
                      expert_return=150.0, loss_fn=None, n_opt_fn=None, rng_seed=0) -> xr.Dataset:
    """A results Dataset as `gather_results` writes it (dims game, flops, params, seed).

    Each budget runs `sizes_per_budget` consecutive sizes of a shared grid, centred on the
    analytic optimum shifted by `offset_dex` decades (so combinations not run stay NaN).
    Loss is `loss_fn(params, samples)` (Chinchilla by default) times log-normal noise;
    return = return_scale * (1/loss)**return_exponent + return_offset.
    """
    rng = np.random.default_rng(rng_seed)
    loss_fn = loss_fn or (lambda n, d: chinchilla_loss(n, d, **CHINCHILLA))
    n_opt_fn = n_opt_fn or (lambda c: chinchilla_n_opt(c, **CHINCHILLA))
    shape = (len(games), len(budgets), len(PARAM_GRID), seeds)
    loss, samples = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, budget in enumerate(budgets):
        centre = int(np.argmin(np.abs(np.log10(PARAM_GRID) - np.log10(n_opt_fn(budget)) - offset_dex)))
        run = slice(centre - sizes_per_budget // 2, centre - sizes_per_budget // 2 + sizes_per_budget)
        params = PARAM_GRID[run].astype(float)
        for i in range(len(games)):
            for s in range(seeds):
                samples[i, j, run, s] = budget / (6 * params)
                loss[i, j, run, s] = loss_fn(params, budget / (6 * params)) * np.exp(
                    noise * rng.standard_normal(len(params)))
    returns = return_scale * (1 / loss) ** return_exponent + return_offset
    return xr.Dataset(
        {"loss": (("game", "flops", "params", "seed"), loss),
         "return": (("game", "flops", "params", "seed"), returns),
         "return_sem": (("game", "flops", "params", "seed"), 0.05 * np.abs(returns)),
         "samples": (("game", "flops", "params", "seed"), samples),
         "epochs": (("game", "flops", "params", "seed"), samples / 1e6),
         "expert_return": (("game",), np.full(len(games), expert_return))},
        coords={"game": list(games), "flops": np.asarray(budgets, float), "params": PARAM_GRID,
                "seed": np.arange(seeds)},
    )


def pure_law_results(noise=0.0, seeds=2, rng_seed=0, **kwargs) -> xr.Dataset:
    """Profiles exactly parabolic in log-log space around N_opt = 0.3 C**0.6, L_min = 20 C**-0.05."""
    def n_opt(budget):
        return 0.3 * budget**0.6

    def loss(params, samples):
        budget = 6 * params * samples
        return 20 * budget**-0.05 * 10 ** (0.3 * (np.log10(params) - np.log10(n_opt(budget))) ** 2)

    return synthetic_results(loss_fn=loss, n_opt_fn=n_opt, noise=noise, seeds=seeds, rng_seed=rng_seed, **kwargs)


def law(fits, quantity, stat, game="Synth"):
    return float(fits["law"].sel(game=game, quantity=quantity, stat=stat))


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


@pytest.mark.parametrize("flag, value, message", [
    ("--negative-returns", "drop", "negative_returns must be one of"),
    ("--bootstrap", "-1", "bootstrap must be >= 0"),
])
def test_fit_command_rejects_a_bad_setting_by_name(tmp_path, flag, value, message):
    """`ilscaling fit` stops on the setting before it reads or writes anything."""
    from ilscaling.cli import main

    synthetic_results().to_netcdf(tmp_path / "results.nc")
    with pytest.raises(ValueError, match=message):
        main(["fit", "--results", str(tmp_path / "results.nc"), "--out-nc", str(tmp_path / "fits.nc"),
              "--summary", str(tmp_path / "summary.md"), flag, value])
    assert not (tmp_path / "fits.nc").exists()


# --- the loss metric: cross entropy or KL ------------------------------------------------------

ENTROPY = 1.5  # a sampling expert's entropy: the cross entropy's floor, which the KL does not carry


def with_kl(results: xr.Dataset, games=None) -> xr.Dataset:
    """`kl` = the loss above an entropy floor for `games` (default: all), NaN for the rest (no expert
    distribution); `loss` (the cross entropy) = that KL + the floor, as for a sampling expert."""
    games = list(results["game"].values) if games is None else games
    kl = results["loss"].copy()
    results = results.assign(loss=results["loss"] + ENTROPY)
    has_kl = xr.DataArray([g in games for g in results["game"].values], dims="game", coords={"game": results["game"]})
    return results.assign(kl=kl.where(has_kl))


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


def _evaluation(game, params, **extra):
    return {"game": game, "budget": 1e12, "params": params, "seed": 0, "flops": 1.01e12, "loss": 1.7,
            "return": 10.0, "return_sem": 1.0, "samples": 100, "epochs": 1.0, "train_loss": 1.6, "width": 2, **extra}


def test_gather_puts_kl_beside_the_loss(tmp_path):
    from ilscaling.evaluate import gather_results
    from ilscaling.io import DataFileError, write_json

    write_json(_evaluation("Qbert", 10, kl=0.02), tmp_path / "a.json")
    write_json(_evaluation("NetHack", 20), tmp_path / "n.json")  # NetHack: no expert distribution, no kl
    write_json({"game": "Qbert", "expert_mean_return": 5.0, "expert_cross_entropy": 1.6, "expert_kl": 1e-8},
               tmp_path / "card.json")
    dataset = gather_results([tmp_path / "a.json", tmp_path / "n.json"], [tmp_path / "card.json"],
                             tmp_path / "r.nc", tmp_path / "r.csv", log=lambda *_: None)
    assert float(dataset["kl"].sel(game="Qbert").max()) == 0.02
    assert np.isnan(dataset["kl"].sel(game="NetHack").values).all()
    assert float(dataset["expert_kl"].sel(game="Qbert")) == 1e-8
    table = pd.read_csv(tmp_path / "r.csv")
    assert list(table.columns[:7]) == ["game", "flops", "params", "seed", "flops_actual", "kl", "loss"]
    assert "kl" in xr.load_dataset(tmp_path / "r.nc")
    write_json(_evaluation("Qbert", 30), tmp_path / "old.json")  # an Atari evaluation from before the KL
    with pytest.raises(DataFileError, match=r"old.json lacks kl"):
        gather_results([tmp_path / "old.json"], [], tmp_path / "s.nc", tmp_path / "s.csv", log=lambda *_: None)


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

def law_of(fits, method, quantity, stat, fit_set="all", game="Synth"):
    return float(fits["laws"].sel({"game": game, "method": method, "fit_set": fit_set, "quantity": quantity,
                                   "stat": stat}))


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
