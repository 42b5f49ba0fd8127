"""Figures regenerate from the results and fits files alone, for clean and awkward games."""

import numpy as np
import pytest
import xarray as xr
from sweeps import synthetic_results

from ilscaling.flops import budget_label
from ilscaling.fit import FitConfig, saturating_fit, seed_means, write_fits
from ilscaling.plots import FIGURE_STEMS, OVERVIEW_STEM, overview_figure, plot_all, plot_game

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGETS = (1e15, 1e16, 1e17, 1e18, 1e19)


def awkward_game() -> xr.Dataset:
    """Top budgets miss the optimum (edge-flagged) and the weaker agents score below zero."""
    centred = synthetic_results(games=("Awkward",), budgets=BUDGETS, noise=0.01, return_offset=-4.5, rng_seed=1)
    shifted = synthetic_results(games=("Awkward",), budgets=BUDGETS, noise=0.01, return_offset=-4.5,
                                offset_dex=0.8, rng_seed=2)
    results = xr.where(centred["flops"] >= 1e18, shifted, centred)
    results["expert_return"] = ("game", [np.nan])  # no demonstrator score recorded
    return results


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """results.nc and fits.nc of a clean game and an awkward one."""
    root = tmp_path_factory.mktemp("study")
    clean = synthetic_results(games=("Clean",), budgets=BUDGETS, noise=0.01)
    results = xr.concat([clean, awkward_game()], "game", data_vars="all")
    results.to_netcdf(root / "results.nc")
    fits = write_fits(root / "results.nc", root / "fits.nc", root / "summary.md", FitConfig())
    assert fits["edge"].sel(game="Awkward", metric="loss").any()
    assert (results["return"].sel(game="Awkward") < 0).any()
    return root


def test_plot_all_writes_every_figure_of_every_game(study):
    paths = plot_all(study / "results.nc", study / "fits.nc", study / "figures")
    expected = {study / "figures" / game / f"{stem}.{ext}"
                for game in ("Clean", "Awkward") for stem in (OVERVIEW_STEM, *FIGURE_STEMS) for ext in ("png", "pdf")}
    assert set(paths) == expected
    for path in expected:
        head = path.read_bytes()[:8]
        assert path.stat().st_size > 5000
        assert head == PNG_SIGNATURE if path.suffix == ".png" else head.startswith(b"%PDF")
    assert not list((study / "figures").rglob(".*"))  # no temporary files left


def test_the_laws_at_a_glance_carry_each_fitted_exponent(study):
    """One page per game: the loss's isoFLOP profiles, L_min(C), N_opt(C), return vs loss; each law's
    title gives its fitted exponent, interval and R², and the axes name the loss metric."""
    with xr.open_dataset(study / "results.nc") as results, xr.open_dataset(study / "fits.nc") as fits:
        results, fits = results.load(), fits.load()
    for game in ("Clean", "Awkward"):
        profiles, frontier, allocation, returns = overview_figure(results, fits, game).axes[:4]
        assert profiles.get_title().startswith("isoFLOP profiles of the held-out loss")
        assert len(profiles.collections) >= 2 * len(BUDGETS)  # per budget: the points and the optimum's star
        for ax, quantity in ((frontier, "l_min"), (allocation, "n_opt"), (returns, "return_vs_loss")):
            law = fits["law"].sel(game=game, quantity=quantity)
            slope, lo, hi, r2 = (float(law.sel(stat=s)) for s in ("slope", "slope_lo", "slope_hi", "r2"))
            assert f"exponent {slope:.3f} [{lo:.3f}, {hi:.3f}] (95% CI), R² = {r2:.3f}" in ax.get_title(), ax.get_title()
        assert profiles.get_ylabel() == "held-out loss (cross entropy)"
        assert frontier.get_ylabel().endswith("(cross entropy)") and returns.get_xlabel().endswith("(cross entropy)")
    renamed = fits.assign(loss_metric=("game", ["kl", "kl"]))
    profiles, frontier, _, returns = overview_figure(results, renamed, "Clean").axes[:4]
    assert all("(KL(expert ‖ BC))" in label for label in (profiles.get_ylabel(), frontier.get_ylabel(), returns.get_xlabel()))


def test_figure_stems_are_the_workflow_names():
    assert FIGURE_STEMS == ("isoflop_loss", "isoflop_return", "optimal_params", "optimal_samples",
                            "loss_frontier", "return_frontier", "return_vs_loss", "allocation")


def test_plot_game_rejects_an_unknown_game(study, tmp_path):
    with xr.open_dataset(study / "results.nc") as results, xr.open_dataset(study / "fits.nc") as fits:
        with pytest.raises(ValueError, match="'Missing'"):
            plot_game(results.load(), fits.load(), "Missing", tmp_path)


def test_budget_text_matches_config_spelling():
    assert [budget_label(b) for b in (1e10, 2e10, 2.5e11)] == ["1e10", "2e10", "2.5e11"]


def test_return_vs_loss_survives_an_undetermined_saturating_fit(tmp_path):
    """Returns unrelated to the loss (a tiny NetHack sweep): the saturating law's band spans dozens of
    decades; the figure is still drawn, its axis following the points."""
    results = synthetic_results(games=("Flat",), budgets=BUDGETS[:3], noise=0.01)
    rng = np.random.default_rng(41)
    results["return"] = results["return"].copy(data=rng.choice([0.0, 0.5, 2.0, 2.5, 3.0, 5.5],
                                                               size=results["return"].shape))
    results.to_netcdf(tmp_path / "results.nc")
    fits = write_fits(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "summary.md", FitConfig())
    loss = results["loss"].values[np.isfinite(results["loss"].values)]
    with np.errstate(over="ignore"):
        lo, hi = saturating_fit(fits, "Flat").band(1 / np.geomspace(loss.min(), loss.max(), 50), 0.95, False)
    assert not np.isfinite(hi).all() or np.nanmax(hi) > 1e100  # the case: such bands broke matplotlib
    paths = plot_game(results, fits, "Flat", tmp_path / "figures")
    assert tmp_path / "figures" / "return_vs_loss.png" in paths


def test_every_loss_axis_names_the_metric_that_was_fitted(tmp_path, monkeypatch):
    """KL fitted for one game, cross entropy for the other (no KL): each figure says which it shows,
    and shows that metric's values."""
    import ilscaling.plots as plots
    import ilscaling.plots.laws
    import ilscaling.plots.style
    from sweeps import ENTROPY, with_kl

    results = with_kl(synthetic_results(games=("Atari", "NetHack"), budgets=BUDGETS, noise=0.01), games=["Atari"])
    results.to_netcdf(tmp_path / "results.nc")
    write_fits(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "summary.md", FitConfig(loss_metric="kl"))
    seen = {}
    real_save = ilscaling.plots.style.save

    def keep_labels(fig, out_dir, stem):
        texts = [fig._suptitle.get_text() if fig._suptitle else ""]
        for ax in fig.axes:
            texts += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        seen[(out_dir.name, stem)] = (" ".join(texts), [ax for ax in fig.axes])
        return real_save(fig, out_dir, stem)

    for module in (plots, ilscaling.plots.laws):  # each saves by the name it imported
        monkeypatch.setattr(module, "save", keep_labels)
    plot_all(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "figures")
    for game, metric, other in (("Atari", "KL(expert ‖ BC)", "cross entropy"), ("NetHack", "cross entropy", "KL")):
        for stem in ("isoflop_loss", "optimal_params", "optimal_samples", "loss_frontier", "return_vs_loss",
                     "allocation"):
            text = seen[(game, stem)][0]
            assert metric in text and other not in text, (game, stem, text)
    # The isoFLOP points are the fitted metric's seed means: Atari's KL, NetHack's cross entropy.
    means = seed_means(results)
    for game, variable in (("Atari", "kl"), ("NetHack", "loss")):
        ax = seen[(game, "isoflop_loss")][1][0]
        plotted = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets())])
        expected = means[variable].sel(game=game).values
        assert np.isclose(plotted, np.nanmin(expected), rtol=1e-12, atol=0).any()
    assert np.nanmin(means["loss"].sel(game="Atari")) == pytest.approx(np.nanmin(means["kl"].sel(game="Atari")) + ENTROPY)
