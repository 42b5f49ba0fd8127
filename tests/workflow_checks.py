"""Checks of a finished study's outputs, shared by the end-to-end tests (local: test_workflow.py;
Slurm: test_slurm.py). What to expect is derived from the study's config (its games, each game's
family and sweep grid), so the checks follow the config when games are added."""

import json
import math
import re
from pathlib import Path

import xarray as xr

from ilscaling.config import forecast_budget, forecast_episodes, load_config
from ilscaling.families import family_of, games_of
from ilscaling.sweep import sweep_runs
from ilscaling.flops import budget_label
from ilscaling.io import read_json
from ilscaling.plots import FIGURE_STEMS, OVERVIEW_STEM

ROOT = Path(__file__).resolve().parents[1]


def data_files(config: dict, game: str) -> list[str]:
    """The game's data files under results/<game>/: its expert stage's folder where it has one, and
    its dataset (families/: data_files)."""
    family = family_of(game)
    expert = ["expert"] if family.dataset_source(config, game, "expert") == "expert" else []
    return [*expert, *(f"data/{name}" for name in family.data_files.values())]


def check_study_outputs(workdir, config: dict) -> None:
    """Every output of a finished study of `config` in `workdir` is there and makes sense."""
    results = Path(workdir) / "results"
    for path in ["scaling/results.nc", "scaling/results.csv", "scaling/fits.nc", "scaling/summary.md"]:
        assert (results / path).is_file(), path

    total_evals = 0
    for game in games_of(config):
        folder, data = game, data_files(config, game)
        for path in data:
            assert (results / folder / path).exists(), f"{folder}/{path}"
        for stem in (OVERVIEW_STEM, *FIGURE_STEMS):
            for ext in ("png", "pdf"):
                assert (results / "figures" / game / f"{stem}.{ext}").stat().st_size > 1000, f"{game}: {stem}"
        runs = sweep_runs(config, game)
        evals = sum(len(run.budgets) for run in runs)
        for run in runs:
            assert (results / folder / "runs" / run.name).is_dir(), f"{game}: {run.name}"
        # one evaluation per (run, budget)
        assert len(list((results / folder / "eval").glob("*.json"))) == evals, game
        # a benchmark file per job: the data jobs (expert, dataset), one per run, one per evaluation
        data_jobs = 1 + (data[0] == "expert")
        assert len(list((results / "benchmarks" / game).rglob("*.tsv"))) >= data_jobs + len(runs) + evals, game
        total_evals += evals

    with xr.open_dataset(results / "scaling/results.nc") as data:
        assert set(data.dims) >= {"game", "flops", "params", "seed"}
        assert int(data["loss"].count()) == total_evals and float(data["loss"].min()) > 0
        assert int(data["return"].count()) == total_evals
        for game in games_of(config):  # KL beside the loss for Atari; NetHack has no expert distribution
            kl, loss = data["kl"].sel(game=game), data["loss"].sel(game=game)
            expert_distribution = family_of(game).has_expert_distribution
            assert int(kl.count()) == (int(loss.count()) if expert_distribution else 0), game
            assert not expert_distribution or float(kl.min()) >= 0, game
    with xr.open_dataset(results / "scaling/fits.nc") as fits:
        for game in games_of(config):
            slopes = fits["law"].sel(game=game, stat="slope")
            assert all(math.isfinite(float(s)) for s in slopes.sel(quantity=["n_opt", "d_opt", "l_min"])), game
            expected = config["fit"].get("loss_metric", "cross_entropy") if family_of(game).has_expert_distribution \
                else "cross_entropy"
            assert str(fits["loss_metric"].sel(game=game).item()) == expected, game
    if config["forecast"]["enabled"]:
        check_forecast_outputs(results, config)


def check_forecast_outputs(results: Path, config: dict) -> None:
    """Each game's forecast agent: planned at C* from the fits, trained for C*, evaluated, judged; the report."""
    with xr.open_dataset(results / "scaling/fits.nc") as fits:
        fitted_budgets = {game: float(fits["forecast_budget"].sel(game=game)) for game in games_of(config)}
    for game in games_of(config):
        folder = results / "forecast" / game
        budget = forecast_budget(config, game)
        assert math.isclose(fitted_budgets[game], budget, rel_tol=1e-9), f"{game}: fits forecast at another C*"
        plan = read_json(folder / "forecast.json")
        assert plan["budget"] == budget, game
        assert math.isclose(plan["samples"] * plan["train_flops_per_sample"], budget, rel_tol=1e-9), game
        assert (folder / "run" / f"c{budget_label(budget)}.pt").is_file(), game
        evaluation = read_json(folder / "eval.json")
        assert evaluation["width"] == plan["width"] and evaluation["params"] == plan["params"], game
        # the run spent C* (at most one batch more) and played the forecast's number of games
        assert budget <= evaluation["flops"] <= budget * 1.05, game
        assert len(evaluation["episode_returns"]) == forecast_episodes(config, game), game
        verdict = read_json(folder / "verdict.json")
        # the verdict compares the loss metric that was fitted, as measured by the evaluation
        assert verdict["loss_metric"] == plan["loss_metric"], game
        measured_key = "kl" if plan["loss_metric"] == "kl" else "loss"
        assert verdict["measured"]["loss"] == evaluation[measured_key], game
        methods = {(c["method"], c["quantity"]) for c in verdict["checks"]}
        assert {("vertex", "loss"), ("vertex", "return")} <= methods, game
        for check in verdict["checks"]:
            assert check["inside"] in (True, False, None) and math.isfinite(check["predicted"]), (game, check)
        for ext in ("png", "pdf"):
            assert (folder / f"forecast.{ext}").stat().st_size > 1000, game
        assert len(list((results / "benchmarks" / game / "forecast").glob("*.tsv"))) == 4, game
    report = (results / "forecast" / "verdict.md").read_text()
    assert all(f"## {game}" in report for game in games_of(config))
    assert "not produced by this run" in report


def report_parts(html_path) -> tuple[str, dict]:
    """The front page (html) and the results' categories {category: {subcategory: [paths]}} of a
    `snakemake --report` html file (the data its page script shows)."""
    text = Path(html_path).read_text()
    front = json.loads(re.search(r"var workflow_desc = (.*?);\n", text).group(1))
    categories = json.loads(re.search(r"var categories = (.*?);\n", text).group(1))
    return front, categories


def check_report(html_path, fits_nc, games: list[str]) -> None:
    """The report of a study with its fits and figures made: the front page shows the fitted laws'
    exponents, and the laws at a glance of every game are the first results of its menu."""
    front, categories = report_parts(html_path)
    assert "Scaling laws for imitation learning" in front and "No laws yet" not in front
    with xr.open_dataset(fits_nc) as fits:
        for game in games:
            for quantity in ("n_opt", "l_min"):
                law = fits["law"].sel(game=game, quantity=quantity)
                lo, hi = float(law.sel(stat="slope_lo")), float(law.sel(stat="slope_hi"))
                assert f"<td>{float(law.sel(stat='slope')):.3f}</td>\n<td>[{lo:.3f}, {hi:.3f}]</td>" in front, (game, quantity)
    first = sorted(categories, key=str.casefold)[0]  # the menu sorts categories alphabetically (localeCompare)
    paths = [path for items in categories[first].values() for path in items]
    assert sorted(paths) == sorted(f"results/figures/{game}/{OVERVIEW_STEM}.png" for game in games), categories
