"""Published results: ingestion of the authors' layouts and a tidy CSV, and fits on the released Atari data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ilscaling.published import detect_layout, list_games, read_published
from ilscaling.fit import FitConfig, fit_results

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT.parent / "shared" / "published" / "atari"
needs_published = pytest.mark.skipif(not PUBLISHED.is_dir(),
                                     reason=f"the authors' Atari data is not at {PUBLISHED} (../shared/published/atari)")


# --- the released Atari data --------------------------------------------------------------------

@pytest.fixture(scope="module")
def atari():
    if not PUBLISHED.is_dir():
        pytest.skip(f"the authors' Atari data is not at {PUBLISHED} (../shared/published/atari)")
    results = read_published(PUBLISHED)
    # The authors' plotting code fits every budget, edge or not.
    return results, fit_results(results, FitConfig(bootstrap=20, exclude_edge_budgets=False))


def _authors_table(game: str, kind: str) -> dict:
    """The authors' plotting code, restated: main file, then a running mean over seed files."""
    table = torch.load(PUBLISHED / f"eval_{kind}" / f"eval_{kind}_{game}.tar", map_location="cpu", weights_only=False)
    table = {b: {p: float(v) for p, v in d.items()} for b, d in table.items()}
    i = 1
    for seed in range(6):
        path = PUBLISHED / f"eval_{kind}" / f"eval_{kind}_{game}_{seed}.tar"
        if path.exists():
            extra = torch.load(path, map_location="cpu", weights_only=False)
            for b in extra:
                for p in extra[b]:
                    table[b][p] = (table[b][p] * i + float(extra[b][p])) / (i + 1)
            i += 1
    return table


def _normal_equations(x, y):
    """Slope and intercept of log10 y on log10 x by explicit normal equations."""
    design = np.column_stack([np.ones(len(x)), np.log10(x)])
    intercept, slope = np.linalg.solve(design.T @ design, design.T @ np.log10(y))
    return slope, intercept


@needs_published
def test_raw_optimum_laws_match_an_independent_least_squares(atari):
    results, fits = atari
    samples_dir = PUBLISHED / "flop_params_to_samples"
    checked = 0
    for game in map(str, results["game"].values):
        loss_file = PUBLISHED / "eval_loss" / f"eval_loss_{game}.tar"
        loss = {b: {p: float(v) for p, v in d.items()}
                for b, d in torch.load(loss_file, map_location="cpu", weights_only=False).items()}
        returns = _authors_table(game, "return")
        budgets = sorted((b for b in loss if loss[b]), key=float)
        expected = {}
        if budgets:
            samples = torch.load(samples_dir / f"flop_params_to_samples_{game}.tar", map_location="cpu",
                                 weights_only=False)
            best = [min(loss[b], key=loss[b].get) for b in budgets]
            c = np.array([float(b) for b in budgets])
            expected["n_opt"] = _normal_equations(c, np.array(best, float))
            expected["l_min"] = _normal_equations(c, np.array([loss[b][n] for b, n in zip(budgets, best)]))
            expected["d_opt"] = _normal_equations(c, np.array([float(samples[b][n]) for b, n in zip(budgets, best)]))
        r_budgets = sorted((b for b in returns if returns[b]), key=float)
        r_max = np.array([max(returns[b].values()) for b in r_budgets])
        if np.all(r_max > 0):
            expected["r_max"] = _normal_equations(np.array([float(b) for b in r_budgets]), r_max)
        for quantity, (slope, intercept) in expected.items():
            row = fits["laws"].sel({"game": game, "method": "raw", "fit_set": "all", "quantity": quantity})
            assert float(row.sel(stat="slope")) == pytest.approx(slope, abs=5e-4), (game, quantity)
            assert float(row.sel(stat="intercept")) == pytest.approx(intercept, abs=5e-4), (game, quantity)
            checked += 1
    assert checked >= 20


@needs_published
def test_every_game_in_the_folder_is_fitted_with_intervals(atari):
    results, fits = atari
    assert list(map(str, fits["game"].values)) == list_games(PUBLISHED)
    for game in map(str, fits["game"].values):
        row = fits["laws"].sel({"game": game, "method": "raw", "fit_set": "all", "quantity": "r_max"})
        assert np.isfinite(float(row.sel(stat="slope"))) or "linear" in str(fits["law_notes"].sel(
            {"game": game, "method": "raw", "fit_set": "all", "quantity": "r_max"}).item())
    # DoubleDunk is released with returns only: its loss laws are reported as not fitted, never dropped silently.
    note = str(fits["law_notes"].sel({"game": "DoubleDunk", "method": "raw", "fit_set": "all", "quantity": "n_opt"}).item())
    assert "no loss values" in note
    assert (fits["laws"].sel({"game": "Breakout", "method": "vertex", "fit_set": "all", "quantity": "n_opt",
                              "stat": "slope_lo"}) < fits["laws"].sel(
        {"game": "Breakout", "method": "vertex", "fit_set": "all", "quantity": "n_opt", "stat": "slope_hi"}))


@needs_published
def test_seed_files_average_in_as_the_authors_running_mean(atari):
    results, _ = atari
    from ilscaling.fit import seed_means

    authors = _authors_table("Boxing", "return")
    means = seed_means(results[["loss", "return", "samples", "return_weight"]]).sel(game="Boxing")
    for budget in ("1e13", "5e14", "1e16"):
        for params, value in authors[budget].items():
            assert float(means["return"].sel(flops=float(budget), params=params)) == pytest.approx(value, rel=1e-9)


# --- synthetic files in the authors' layouts ----------------------------------------------------

def _write_atari(folder: Path, game="Pong", budgets=("1e13", "1e14", "1e15"), sizes=(1000, 5000, 20000)):
    for sub in ("eval_loss", "eval_return", "flop_params_to_samples"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    loss = {b: {n: torch.tensor(1.0 + 1e3 / n + float(b) ** -0.1) for n in sizes} for b in budgets}
    ret = {b: {n: 10.0 + i for i, n in enumerate(sizes)} for b in budgets}
    samples = {b: {n: int(float(b) / (6 * n)) for n in sizes} for b in budgets}
    torch.save(loss, folder / "eval_loss" / f"eval_loss_{game}.tar")
    torch.save(ret, folder / "eval_return" / f"eval_return_{game}.tar")
    torch.save({budgets[0]: {sizes[0]: 20.0}}, folder / "eval_return" / f"eval_return_{game}_0.tar")
    torch.save(samples, folder / "flop_params_to_samples" / f"flop_params_to_samples_{game}.tar")
    return loss, ret


def test_atari_layout_reads_and_averages_seed_files(tmp_path):
    _write_atari(tmp_path)
    results = read_published(tmp_path)
    assert detect_layout(tmp_path) == "atari" and list(results["game"].values) == ["Pong"]
    from ilscaling.fit import seed_means

    means = seed_means(results[["loss", "return", "samples", "return_weight"]])
    assert float(means["return"].sel(game="Pong", flops=1e13, params=1000)) == pytest.approx((10.0 + 20.0) / 2)
    assert float(means["samples"].sel(game="Pong", flops=1e14, params=5000)) == int(1e14 / 30000)


def _write_nethack(folder: Path, experiment="bc_iso", budgets=("1e15", "1e16"), sizes=(10_000, 100_000)):
    for i, n in enumerate(sizes):
        run = folder / "nethack" / experiment / f"run{i}"
        run.mkdir(parents=True)
        for b in budgets:
            torch.save({"eval_loss": 2.0 + 1e3 / n, "eval_se": 0.01, "params": n, "samples": float(b) / (6 * n)},
                       run / f"eval_loss_overlap_0_model_{b}.tar")
            (run / f"eval_returns_model_{b}.txt").write_text("100\n200\n300\n")


def test_nethack_layout_reads_losses_returns_and_samples(tmp_path):
    _write_nethack(tmp_path)
    results = read_published(tmp_path / "nethack")
    assert list(results["game"].values) == ["NetHackBcIso"]
    row = results.sel(game="NetHackBcIso", flops=1e15, params=10_000, seed=0)
    assert float(row["loss"]) == pytest.approx(2.1) and float(row["return"]) == pytest.approx(200.0)
    assert float(row["return_sem"]) == pytest.approx(100 / np.sqrt(3))
    assert float(row["samples"]) == pytest.approx(1e15 / 60_000)
    both = tmp_path / "both"
    _write_nethack(both)
    _write_atari(both / "atari")
    assert detect_layout(both) == "experiment_data"
    assert list_games(both) == ["Pong", "NetHackBcIso"]
    assert sorted(read_published(both)["game"].values) == ["NetHackBcIso", "Pong"]


def test_tidy_csv_reads_with_missing_values(tmp_path):
    rows = [{"game": "G", "flops": c, "params": n, "samples": c / (6 * n), "seed": 0,
             "loss": 1 + 100 / n, "return": np.nan if n == 100 else 5.0} for c in (1e12, 1e13) for n in (100, 1000, 10000)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    results = read_published(tmp_path / "t.csv")
    assert int(results["loss"].count()) == 6 and int(results["return"].count()) == 4


# --- bad inputs ---------------------------------------------------------------------------------

def test_unknown_layout_is_rejected(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ValueError, match="unknown published-results layout"):
        read_published(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown published-results layout.*x.json"):
        read_published(tmp_path / "x.json")


def test_empty_table_is_rejected(tmp_path):
    pd.DataFrame(columns=["game", "flops", "params", "samples", "loss", "return"]).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(ValueError, match="empty"):
        read_published(tmp_path / "e.csv")
    for sub in ("eval_loss", "eval_return"):
        (tmp_path / "atari" / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        read_published(tmp_path / "atari")


def test_single_budget_is_rejected_naming_the_game(tmp_path):
    _write_atari(tmp_path, game="Solo", budgets=("1e13",))
    with pytest.raises(ValueError, match=r"game 'Solo'.*single compute budget"):
        read_published(tmp_path)


def test_non_positive_loss_is_rejected_naming_the_game(tmp_path):
    rows = [{"game": "Neg", "flops": c, "params": n, "samples": 1.0, "loss": -1.0 if n == 10 else 1.0, "return": 1.0}
            for c in (1e12, 1e13) for n in (10, 100, 1000)]
    pd.DataFrame(rows).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(ValueError, match=r"game 'Neg'.*non-positive loss"):
        read_published(tmp_path / "n.csv")


def test_nan_values_are_rejected_naming_the_file(tmp_path):
    _write_atari(tmp_path)
    path = tmp_path / "eval_loss" / "eval_loss_Pong.tar"
    table = torch.load(path, weights_only=False)
    table["1e14"][5000] = torch.tensor(float("nan"))
    torch.save(table, path)
    with pytest.raises(ValueError, match=r"eval_loss_Pong.tar, budget 1e14, params 5000.*NaN"):
        read_published(tmp_path)
    rows = pd.DataFrame({"game": ["G", "G"], "flops": [1e12, np.nan], "params": [10, 10], "samples": [1, 1],
                         "loss": [1.0, 1.0], "return": [1.0, 1.0]})
    rows.to_csv(tmp_path / "k.csv", index=False)
    with pytest.raises(ValueError, match=r"column 'flops' is NaN"):
        read_published(tmp_path / "k.csv")


def _tidy(tmp_path, name="t.csv", **change):
    rows = pd.DataFrame([{"game": "G", "flops": c, "params": n, "samples": c / (6 * n), "seed": 0,
                          "loss": 1 + 100 / n, "return": 5.0} for c in (1e12, 1e13) for n in (100, 1000, 10000)])
    for column, (row, value) in change.items():
        rows[column] = rows[column].astype(object)
        rows.loc[row, column] = value
    rows.to_csv(tmp_path / name, index=False)
    return tmp_path / name


@pytest.mark.parametrize("change, message", [
    ({"flops": (2, -1e12)}, r"column 'flops' row 4 \(G\) is -1e\+12: it must be positive"),   # was: accepted
    ({"params": (1, -1000)}, r"column 'params' row 3 \(G\) is -1000: it must be positive"),  # was: LinAlgError
    ({"params": (0, 1.5)}, r"column 'params' row 2 is 1.5: a parameter count is a whole number"),  # was: truncated
    ({"samples": (3, -5)}, r"column 'samples' row 5 \(G\) is -5: it must be positive"),  # was: run dropped
    ({"game": (0, "Space Invaders")}, r"game names \['Space Invaders'\] have characters"),  # was: MissingInput
])
def test_bad_tidy_rows_are_named_before_anything_is_written(tmp_path, change, message):
    path = _tidy(tmp_path, **change)
    with pytest.raises(ValueError, match=message):
        read_published(path)
    if "game" in change:  # read when the workflow is, to name its figures: named there too
        with pytest.raises(ValueError, match=message):
            list_games(path)


def test_an_empty_csv_file_is_named(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    for read in (read_published, list_games):   # was: EmptyDataError while the workflow is read
        with pytest.raises(ValueError, match=r"empty.csv: the file is empty"):
            read(tmp_path / "empty.csv")


def test_broken_results_and_evaluations_are_named(tmp_path):
    from ilscaling.evaluate import gather_results
    from ilscaling.io import DataFileError, write_json
    from ilscaling.plots import plot_all
    from ilscaling.fit import write_fits

    (tmp_path / "results.nc").write_bytes(b"")
    with pytest.raises(DataFileError, match=r"results .*results.nc is empty"):   # was: an xarray backend error
        write_fits(tmp_path / "results.nc", tmp_path / "fits.nc", tmp_path / "summary.md")
    (tmp_path / "junk.nc").write_bytes(b"not netcdf")
    with pytest.raises(DataFileError, match=r"junk.nc is not a readable netCDF file"):
        plot_all(tmp_path / "junk.nc", tmp_path / "junk.nc", tmp_path / "figures")
    write_json({"game": "Breakout", "params": 10, "loss": 1.0}, tmp_path / "eval.json")
    with pytest.raises(DataFileError, match=r"evaluation .*eval.json lacks budget, seed, flops"):   # was: KeyError
        gather_results([tmp_path / "eval.json"], [], tmp_path / "r.nc", tmp_path / "r.csv", log=lambda *_: None)
    assert not (tmp_path / "fits.nc").exists() and not (tmp_path / "r.nc").exists()
