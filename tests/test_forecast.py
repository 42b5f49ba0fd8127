"""The forecast stage: width choice, D* arithmetic, the budget's one source, and the verdict logic."""

import json
import math

import numpy as np
import pytest
import yaml
from sweeps import BUDGETS, pure_law_results

from ilscaling.config import ConfigError, forecast_budget, forecast_episodes, validate_config
from ilscaling.forecast import (
    bc_args_from_forecast, check_prediction, forecast_verdict, format_sizes, nearest_width, parse_sizes, plan_forecast,
    samples_for_budget, verdict_markdown, write_verdict_report,
)
from ilscaling.fit import FitConfig, fit_results

# (params, training FLOPs per sample) of three widths (the smoke study's Breakout CNN)
SIZES = {1: (725, 642888.0), 2: (1582, 1338048.0), 4: (3704, 2885184.0)}
C_STAR = 10 * max(BUDGETS)


@pytest.fixture(scope="module")
def fits():
    """Fits of an exact law, N_opt = 0.3 C^0.6, L_min = 20 C^-0.05 (few bootstrap resamples: fast)."""
    return fit_results(pure_law_results(), FitConfig(bootstrap=50))


def sizes_around(n_star: float) -> dict[int, tuple[int, float]]:
    """Widths 1..5 with parameters 0.3, 0.6, 1.1, 2.5, 5 x n_star and FLOPs per sample 6N."""
    return {w: (int(f * n_star), 6.0 * f * n_star) for w, f in zip(range(1, 6), (0.3, 0.6, 1.1, 2.5, 5.0))}


# --- width and samples ------------------------------------------------------------------------

def test_nearest_width_is_nearest_in_log_params():
    assert nearest_width(1000, SIZES) == 1  # ln(1000/725) = 0.32 < ln(1582/1000) = 0.46
    assert nearest_width(2500, SIZES) == 4  # ln(3704/2500) = 0.39 < ln(2500/1582) = 0.46
    assert nearest_width(1582, SIZES) == 2
    assert nearest_width(10, SIZES) == 1 and nearest_width(1e9, SIZES) == 4  # beyond the ends: the nearest end


def test_nearest_width_tie_takes_the_smaller_width_and_rejects_bad_n_star():
    sizes = {1: (100, 1.0), 2: (400, 1.0)}
    assert nearest_width(200, sizes) == 1  # geometric mean: equally far in log
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="N\\*"):
            nearest_width(bad, sizes)


def test_samples_spend_exactly_the_budget():
    samples = samples_for_budget(2e10, SIZES[4][1])
    assert samples == pytest.approx(2e10 / 2885184.0)
    assert samples * SIZES[4][1] == pytest.approx(2e10, rel=1e-12)
    with pytest.raises(ValueError):
        samples_for_budget(2e10, 0.0)


def test_sizes_round_trip_through_the_command_line_format():
    assert parse_sizes(format_sizes(SIZES).split()) == SIZES
    with pytest.raises(ValueError, match="width:params"):
        parse_sizes(["4:3704"])


# --- one source of C* -------------------------------------------------------------------------

def test_fit_config_forecast_budget_precedence():
    config = FitConfig(forecast_factor=2.0, forecast_budgets={"A": 1e13, "B": 5e13})
    assert config.forecast_budget_of("A", 4e12) == 1e13
    assert config.forecast_budget_of("C", 4e12) == 8e12
    assert FitConfig().forecast_budget_of("C", 4e12) == 4e13  # default: 10x
    assert FitConfig(forecast_budget=3e13).forecast_budget_of("C", 4e12) == 3e13
    assert FitConfig.from_attrs(config.to_attrs()) == config
    assert config.to_attrs()["config_forecast_budgets"] == "A=10000000000000.0,B=50000000000000.0"
    for bad in ({"A": None}, {"A": -1}, {"A": "x"}, {"A": float("inf")}):
        with pytest.raises(ValueError, match="forecast_budgets"):
            FitConfig(forecast_budgets=bad)
    with pytest.raises(ValueError, match="forecast_factor"):
        FitConfig(forecast_factor=0)


def test_fits_forecast_each_game_at_its_own_budget():
    results = pure_law_results(seeds=1, games=("A", "B"))
    fits = fit_results(results, FitConfig(bootstrap=0, forecast_factor=3.0, forecast_budgets={"A": 1e19}))
    assert float(fits["forecast_budget"].sel(game="A")) == 1e19
    assert float(fits["forecast_budget"].sel(game="B")) == pytest.approx(3 * max(BUDGETS))
    n_star = float(fits["forecast"].sel({"game": "A", "method": "vertex", "target": "n_opt", "bound": "value"}))
    assert n_star == pytest.approx(0.3 * 1e19**0.6, rel=1e-6)


def smoke_config(**forecast) -> dict:
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/smoke.yaml").read_text())
    config["forecast"] = forecast
    return config


def test_config_forecast_section_defaults_and_budgets():
    config = validate_config(smoke_config())
    assert config["forecast"] == {"enabled": True, "games": None, "budget_factor": 10, "budgets": {}, "method": "vertex",
                                  "episodes": None, "references": []}
    assert forecast_budget(config, "Breakout") == 1e11 and forecast_budget(config, "NetHack") == 1e12
    assert forecast_episodes(config, "Breakout") == 4 * config["atari"]["evaluation"]["episodes"]
    config = validate_config(smoke_config(budget_factor=2, budgets={"NetHack": "5e11"}, episodes=6))
    assert forecast_budget(config, "Breakout") == 2e10 and forecast_budget(config, "NetHack") == 5e11
    assert forecast_episodes(config, "NetHack") == 6


@pytest.mark.parametrize("forecast, fit, message", [
    ({"budgets": {"Pong": "1e12"}}, {}, "forecast.budgets.Pong: not a game"),
    ({"budgets": {"NetHack": "0"}}, {}, "forecast.budgets.NetHack"),
    ({"episodes": 1}, {}, "forecast.episodes"),
    ({"references": [{"game": "Pong", "quantity": "return", "value": 1, "source": "s", "label": "l"}]}, {},
     "forecast.references\\[0\\].game"),
    ({"references": [{"game": "NetHack", "value": 1}]}, {}, "forecast.references\\[0\\]"),
    ({}, {"forecast_budget": "1e13"}, "fit.forecast_budget"),
])
def test_config_forecast_errors_name_the_key(forecast, fit, message):
    config = smoke_config(**forecast)
    config["fit"].update(fit)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


# --- the plan ---------------------------------------------------------------------------------

def test_plan_picks_the_width_nearest_the_forecast_n_star(fits):
    n_star = 0.3 * C_STAR**0.6
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(n_star))
    assert plan["n_star"] == pytest.approx(n_star, rel=1e-6)
    assert plan["width"] == 3 and plan["params"] == int(1.1 * n_star)
    assert plan["samples"] == pytest.approx(C_STAR / (6.0 * 1.1 * n_star))
    assert plan["notes"] == [] and plan["width_method"] == "vertex"
    loss = plan["predictions"]["vertex"]["loss"]
    assert loss["value"] == pytest.approx(20 * C_STAR**-0.05, rel=1e-6)
    assert loss["lo"] <= loss["value"] <= loss["hi"]
    assert plan["predictions"]["parametric"]["loss"]["value"] > 0
    json.dumps(plan)  # JSON-ready


def test_plan_notes_an_n_star_beyond_the_buildable_sizes(fits):
    plan = plan_forecast(fits, "Synth", C_STAR, SIZES)
    assert plan["width"] == 4 and any("outside the buildable sizes" in note for note in plan["notes"])


def test_plan_holds_the_agent_within_the_data(fits):
    """An N* whose agent would repeat the data more than max_epochs gives way to the narrowest width
    within them (the data-constrained optimum); where none is, the plan refuses."""
    sizes = sizes_around(0.3 * C_STAR**0.6)  # widths 1..5, f = 6 x params
    free = plan_forecast(fits, "Synth", C_STAR, sizes)
    frames = free["samples"] / 2  # the nearest width (3) would make 2 passes
    within = plan_forecast(fits, "Synth", C_STAR, sizes, train_frames=frames, max_epochs=4)
    assert within["width"] == 3 and within["epochs"] == pytest.approx(2) and within["notes"] == []
    bound = plan_forecast(fits, "Synth", C_STAR, sizes, train_frames=frames, max_epochs=1.5)
    epochs = {w: C_STAR / f / frames for w, (_, f) in sizes.items()}
    assert bound["width"] == min(w for w in sizes if epochs[w] <= 1.5) > 3
    assert bound["epochs"] == pytest.approx(epochs[bound["width"]]) and bound["nearest_width"] == 3
    assert bound["samples"] == pytest.approx(C_STAR / sizes[bound["width"]][1])
    assert any("the narrowest within the data" in note for note in bound["notes"])
    with pytest.raises(ValueError, match="every width would see"):
        plan_forecast(fits, "Synth", C_STAR, sizes, train_frames=frames, max_epochs=0.01)


def test_plan_refuses_fits_made_at_another_budget(fits):
    with pytest.raises(ValueError, match="refit"):
        plan_forecast(fits, "Synth", 2 * C_STAR, SIZES)
    with pytest.raises(ValueError, match="not in the fits"):
        plan_forecast(fits, "Pong", C_STAR, SIZES)


def test_training_arguments_come_from_the_plan(fits):
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    args = bc_args_from_forecast(json.loads(json.dumps(plan)), lr=1e-4, batch_size=64, seed=3)
    assert (args.game, args.width, args.budgets, args.lr, args.batch_size, args.seed) == \
        ("Synth", 3, [C_STAR], 1e-4, 64, 3)


# --- the verdict ------------------------------------------------------------------------------

def test_check_prediction_inside_outside_and_without_interval():
    inside = check_prediction(1.05, {"value": 1.0, "lo": 0.9, "hi": 1.1})
    assert inside["inside"] is True and inside["relative_error"] == pytest.approx(0.05)
    assert check_prediction(1.1, {"value": 1.0, "lo": 0.9, "hi": 1.1})["inside"] is True  # the ends count
    outside = check_prediction(0.5, {"value": 1.0, "lo": 0.9, "hi": 1.1})
    assert outside["inside"] is False and outside["relative_error"] == pytest.approx(-0.5)
    negative = check_prediction(-3.0, {"value": -2.0, "lo": -2.5, "hi": -1.5})
    assert negative["inside"] is False and negative["relative_error"] == pytest.approx(-0.5)
    bare = check_prediction(2.0, {"value": 1.0, "lo": None, "hi": None})
    assert bare["inside"] is None and bare["relative_error"] == pytest.approx(1.0)


def evaluation_of(plan, loss, ret):
    return {"game": plan["game"], "width": plan["width"], "loss": loss, "return": ret, "return_sem": 1.5,
            "episode_returns": [ret] * 8, "flops": plan["budget"] * 1.0001, "samples": int(plan["samples"]) + 1,
            "epochs": 3.2, "heldout_frames": 1000, "episodes_truncated": 0}


def test_verdict_marks_each_method_inside_or_outside(fits, tmp_path):
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    vertex = plan["predictions"]["vertex"]
    good = forecast_verdict(plan, evaluation_of(plan, vertex["loss"]["value"], vertex["return"]["value"]))
    by_key = {(c["method"], c["quantity"]): c for c in good["checks"]}
    assert by_key[("vertex", "loss")]["inside"] and by_key[("vertex", "return")]["inside"]
    assert by_key[("vertex", "loss")]["relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert {m for m, _ in by_key} == {"raw", "vertex", "parametric"}

    bad = forecast_verdict(plan, evaluation_of(plan, 3 * vertex["loss"]["hi"], vertex["return"]["value"]))
    loss_checks = [c for c in bad["checks"] if c["quantity"] == "loss"]
    assert all(c["inside"] is False for c in loss_checks)
    assert all(c["relative_error"] > 1 for c in loss_checks)

    with pytest.raises(ValueError, match="does not belong"):
        forecast_verdict(plan, {**evaluation_of(plan, 1.0, 1.0), "width": plan["width"] + 1})

    references = [{"game": "Synth", "quantity": "return", "value": 123.0, "source": "Someone et al. 2023, Table 9",
                   "label": "their agent"},
                  {"game": "Synth", "quantity": "return", "value": 77.0, "source": "a summary of Else et al.",
                   "label": "quoted", "checked": False},
                  {"game": "Other", "quantity": "return", "value": 1.0, "source": "x", "label": "not shown"}]
    text = verdict_markdown([good, bad], references)
    assert "not produced by this run" in text and "Someone et al. 2023, Table 9" in text and "not shown" not in text
    assert "| Synth | their agent | return | 123 | Someone et al. 2023, Table 9 | yes |" in text
    assert "| Synth | quoted | return | 77 | a summary of Else et al. | *unchecked* |" in text
    assert "**outside**" in text and "| Synth | 1e19 |" in text
    flat = {**good, "checks": [check_prediction(2.0, {"value": 1.0, "lo": 1.0, "hi": 1.0 + 1e-15})
                               | {"method": "vertex", "quantity": "return", "interval": "x"}]}
    assert "zero-width interval" in verdict_markdown([flat], [])
    one_sided = {**good, "checks": [check_prediction(2.0, {"value": 1.0, "lo": 0.5, "hi": None})
                                    | {"method": "raw", "quantity": "return", "interval": "x"}]}
    assert "| raw | return | 1 | – |" in verdict_markdown([one_sided], [])  # a one-sided interval shows as –
    paths = []
    for i, verdict in enumerate((good, bad)):
        paths.append(tmp_path / f"v{i}.json")
        paths[-1].write_text(json.dumps(verdict))
    write_verdict_report(paths, tmp_path / "verdict.md", [])
    assert "None configured" in (tmp_path / "verdict.md").read_text()


def test_forecast_figure_is_written(fits, tmp_path):
    from ilscaling.plots import plot_forecast

    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    vertex = plan["predictions"]["vertex"]
    verdict = forecast_verdict(plan, evaluation_of(plan, vertex["loss"]["value"] * 1.01, vertex["return"]["value"]))
    paths = plot_forecast(fits, verdict, tmp_path)
    assert [p.name for p in paths] == ["forecast.png", "forecast.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert math.isfinite(np.log10(verdict["measured"]["flops"]))


def test_verdict_checks_the_loss_against_both_laws_and_names_the_better_one(fits):
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    saturating = plan["predictions"]["vertex"]["loss_saturating"]
    # The exact pure law L = 20 C^-0.05: the saturating law finds no floor and predicts the same loss.
    assert saturating["value"] == pytest.approx(20 * C_STAR**-0.05, rel=1e-3)
    assert saturating["lo"] <= saturating["value"] <= saturating["hi"]
    assert "loss_saturating" not in plan["predictions"]["parametric"]
    assert set(plan["loss_forms"]) == {"raw", "vertex"}
    assert "cross-validates better" in plan["loss_forms"]["vertex"]["why"] or "tie" in plan["loss_forms"]["vertex"]["why"]
    json.dumps(plan)

    verdict = forecast_verdict(plan, evaluation_of(plan, saturating["value"], plan["predictions"]["vertex"]["return"]["value"]))
    by_key = {(c["method"], c["quantity"]): c for c in verdict["checks"]}
    assert by_key[("vertex", "loss_saturating")]["inside"] is True
    assert by_key[("vertex", "loss_saturating")]["measured"] == verdict["measured"]["loss"]
    assert ("parametric", "loss_saturating") not in by_key
    text = verdict_markdown([verdict], [])
    assert "| vertex | loss (E + A C^b) |" in text
    assert f"- vertex: {plan['loss_forms']['vertex']['why']}" in text


def test_the_verdict_compares_the_loss_metric_that_was_fitted():
    """KL fitted: the forecast agent's measured KL (not its cross entropy) is judged against the forecast."""
    from sweeps import ENTROPY, with_kl

    kl_fits = fit_results(with_kl(pure_law_results()), FitConfig(bootstrap=0, loss_metric="kl"))
    plan = plan_forecast(kl_fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    assert plan["loss_metric"] == "kl"
    vertex = plan["predictions"]["vertex"]
    kl = vertex["loss"]["value"]
    evaluation = {**evaluation_of(plan, kl + ENTROPY, vertex["return"]["value"]), "kl": kl}
    verdict = forecast_verdict(plan, evaluation)
    check = next(c for c in verdict["checks"] if (c["method"], c["quantity"]) == ("vertex", "loss"))
    assert check["measured"] == kl and check["inside"] and check["relative_error"] == pytest.approx(0, abs=1e-12)
    assert verdict["loss_metric"] == "kl" and verdict["measured"]["cross_entropy"] == kl + ENTROPY
    text = verdict_markdown([verdict], [])
    assert "Loss compared: KL(expert ‖ BC)" in text and "| Synth | 1e19 | w" in text and "| KL(expert ‖ BC) |" in text
    with pytest.raises(ValueError, match="predicts the KL.*has no 'kl'"):
        forecast_verdict(plan, evaluation_of(plan, kl + ENTROPY, vertex["return"]["value"]))


def test_a_cross_entropy_forecast_compares_the_cross_entropy(fits):
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    assert plan["loss_metric"] == "cross_entropy"
    vertex = plan["predictions"]["vertex"]
    verdict = forecast_verdict(plan, {**evaluation_of(plan, vertex["loss"]["value"], 1.0), "kl": 0.001})
    assert verdict["measured"]["loss"] == vertex["loss"]["value"] and verdict["measured"]["kl"] == 0.001
