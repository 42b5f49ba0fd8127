import copy
from pathlib import Path

import pytest
import yaml

from ilscaling.config import ConfigError, validate_config
from ilscaling.sweep import propose_grid, sweep_runs
from ilscaling.models.atari import model_size

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "configs/smoke.yaml", "configs/paper-atari.yaml"])
def test_shipped_configs_are_valid(name):
    config = validate_config(load(name))
    assert all(b > 0 for b in config["atari"]["sweep"]["budgets"])
    runs = sweep_runs(config, config["atari"]["games"][0])
    assert runs and all(run.budgets for run in runs)


def test_paper_config_is_the_papers_setting():
    config = validate_config(load("configs/paper-atari.yaml"))
    atari = config["atari"]
    assert set(atari["games"]) == {"BattleZone", "Qbert", "BankHeist", "Boxing", "Breakout", "NameThisGame",
                                   "Phoenix", "SpaceInvaders"}
    assert min(atari["sweep"]["widths"]) == 1 and max(atari["sweep"]["widths"]) == 266
    assert atari["sweep"]["budgets"][0] == 1e13 and atari["sweep"]["budgets"][-1] == 1e18
    assert atari["expert"]["total_steps"] == 10_000_000


def test_default_study_spans_two_decades_with_four_sizes_per_budget():
    config = validate_config(load("config.yaml"))
    for game in config["atari"]["games"]:
        grid = {float(b): widths for b, widths in __import__("ilscaling.config").config.sweep_grid(config, game).items()}
        assert max(grid) / min(grid) >= 100 and len(grid) >= 5
        assert all(len(widths) >= 4 for widths in grid.values())


def _broken(mutate):
    config = copy.deepcopy(load("configs/smoke.yaml"))
    mutate(config)
    return config


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["atari"].update(gmaes=["Breakout"]), "gmaes"),
        (lambda c: c.update(fitt={}), "fitt"),
        (lambda c: c["atari"].update(games=["Breakoutt"]), "atari.games[0]"),
        (lambda c: c["atari"]["sweep"].update(budgets=["1e9", 0]), "atari.sweep.budgets[1]"),
        (lambda c: c["atari"]["sweep"].update(budgets=["1e9", -5.0]), "atari.sweep.budgets[1]"),
        (lambda c: c["atari"]["sweep"].update(widths=[]), "atari.sweep.widths"),
        (lambda c: c["atari"]["bc"].update(lr="fast"), "atari.bc.lr"),
        (lambda c: c["atari"]["bc"].update(max_grad_norm=0), "atari.bc.max_grad_norm"),
        (lambda c: c["atari"]["demonstrations"].update(heldout_fraction=1.5), "atari.demonstrations.heldout_fraction"),
        (lambda c: c["atari"]["sweep"]["grid"].update({"1e9": [1, 99]}), "atari.sweep.grid.1e9"),
        (lambda c: c["nethack"]["evaluation"].update(env="NetHackChallenge-v0"), "nethack.evaluation.env"),
        (lambda c: c["nethack"]["bot"].update(env="unseeded"), "nethack.bot.env"),
        (lambda c: c["fit"].update(loss_metric="KL"), "fit.loss_metric"),
    ],
)
def test_bad_config_names_the_key(mutate, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        validate_config(_broken(mutate))


def _proposed(config):
    config["atari"]["sweep"].pop("grid")


@pytest.mark.parametrize("mutate, message", [
    # Failed at gather, after the expert, with "--evals: expected at least one argument".
    (lambda c: (_proposed(c), c["atari"]["sweep"].update(budgets=["1e3"])),
     r"atari\.sweep\.budgets: Breakout: budgets 1e3 buy no width"),
    # Were dropped from the grid without a word.
    (lambda c: (_proposed(c), c["atari"]["sweep"].update(budgets=["1e7", "1e8", "1e10", "2e10"])),
     r"budgets 1e7, 1e8 buy no width of atari\.sweep\.widths"),
    (lambda c: c["atari"]["sweep"]["grid"].pop("3e9"), r"atari\.sweep\.grid: budgets 3e9 of atari\.sweep\.budgets"),
    # Failed after all training: "needs at least 2 compute budgets ... got 0".
    (lambda c: c["atari"]["sweep"].update(grid={"1e9": [1, 2], "3e9": [1, 2], "1e10": [1, 2, 4]}),
     r"fewer widths than fit\.min_sizes_per_budget = 3 at 1e9: 2 \(1, 2\); 3e9"),
    # Failed after the expert: "need at least 2 episodes to split".
    (lambda c: c["atari"]["demonstrations"].update(frames=100), r"atari\.demonstrations\.frames: 100 frames may be"),
    # A torch TypeError.
    (lambda c: c["atari"]["sweep"].update(widths=[1, 2.0, 4]), r"atari\.sweep\.widths\[1\]: 2\.0 is not of type"),
    (lambda c: (c.pop("atari"), c.pop("nethack")), "no atari and no nethack section"),
    (lambda c: c["atari"]["sweep"].update(budgets=["1e9", 0]), r"atari\.sweep\.budgets\[1\]: budget must be positive, got 0"),
    # A run that repeats its data: its laws would describe another regime (issue 14).
    (lambda c: c["atari"]["bc"].update(max_epochs=4),
     r"atari\.bc\.max_epochs: Breakout: runs would see their ~1,125 training frames more than 4 times "
     r"\(width 1 at 1e10: 13\.8; width 2 at 1e10: 6\.6\): raise atari\.demonstrations\.frames"),
    (lambda c: (c["atari"]["bc"].update(max_epochs=14), c["forecast"].update(budget_factor=100)),
     r"atari\.bc\.max_epochs: Breakout: the forecast agent at C\* = 1e12 would see .* at the largest width \(4\)"),
    (lambda c: (_proposed(c), c["atari"]["bc"].update(max_epochs=0.01)),
     r"atari\.sweep\.budgets: Breakout: budgets 1e9, 3e9, 1e10 buy no width .* within 0\.01 epochs"),
])
def test_what_would_fail_hours_later_fails_before_any_job(mutate, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_broken(mutate))


def test_config_files_that_cannot_be_read_are_named(tmp_path):
    from ilscaling.config import load_config

    with pytest.raises(ConfigError, match="config file .*missing.yaml does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("seed: 0\natari:\n  games: [Breakout\n  bc: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML(.|\n)*line 4"):
        load_config(tmp_path / "bad.yaml")


def test_defaults_are_filled_in():
    config = validate_config(_broken(lambda c: c.pop("fit")))
    assert config["fit"]["exclude_edge_budgets"] is True and config["fit"]["min_sizes_per_budget"] == 3
    assert config["fit"]["bootstrap"] == 1000 and config["fit"]["negative_returns"] == "exclude"
    assert config["fit"]["loss_metric"] == "cross_entropy"  # the paper's loss unless a study asks for the KL


def test_studies_fit_the_kl_where_the_expert_samples_and_paper_configs_the_cross_entropy():
    for name, metric in (("config.yaml", "kl"), ("configs/smoke.yaml", "kl"), ("configs/paper-atari.yaml",
                                                                             "cross_entropy")):
        assert validate_config(load(name))["fit"]["loss_metric"] == metric, name
    assert load("configs/paper-nethack.yaml")["fit"]["loss_metric"] == "cross_entropy"


def test_nethack_games_are_seeded_unless_a_config_asks_for_the_challenge():
    unset = validate_config(_broken(lambda c: [c["nethack"][part].pop("env") for part in ("bot", "evaluation")]))
    assert unset["nethack"]["bot"]["env"] == unset["nethack"]["evaluation"]["env"] == "seeded"
    for name in ("config.yaml", "configs/smoke.yaml"):
        config = validate_config(load(name))
        assert config["nethack"]["bot"]["env"] == config["nethack"]["evaluation"]["env"] == "seeded"
    assert validate_config(load("configs/paper-nethack.yaml"))["nethack"]["evaluation"]["env"] == "challenge"


def test_proposed_grid_leaves_out_widths_that_would_repeat_their_data():
    sizes = {w: model_size(w, 4) for w in [1, 2, 4, 8, 16, 32, 64, 128]}
    free = propose_grid([1e12], sizes, samples_per_step=128, sizes_per_budget=4)
    max_samples = 1e12 / sizes[sorted(free["1e12"])[1]][1]
    bounded = propose_grid([1e12], sizes, samples_per_step=128, sizes_per_budget=4, max_samples=max_samples)
    assert min(bounded["1e12"]) == sorted(free["1e12"])[1]
    assert all(1e12 / sizes[w][1] <= max_samples for w in bounded["1e12"])


def test_proposed_grid_centres_on_the_expected_optimum():
    budgets = [1e10, 1e11, 1e12, 1e13]
    sizes = {w: model_size(w, 4) for w in [1, 2, 4, 8, 16, 32, 64, 128]}
    grid = propose_grid(budgets, sizes, samples_per_step=128, sizes_per_budget=4, samples_per_param=20, min_steps=20)
    assert list(grid) == ["1e10", "1e11", "1e12", "1e13"]
    assert all(3 <= len(w) <= 4 for w in grid.values())  # 1e10 buys width 8 too few steps
    centres = [sorted(w)[len(w) // 2] for w in grid.values()]
    assert centres == sorted(centres) and centres[0] < centres[-1]  # larger budgets, larger models


def test_forecast_games_choose_whose_agent_is_trained():
    from ilscaling.config import forecast_games

    assert forecast_games(validate_config(load("configs/smoke.yaml"))) == ["Breakout", "NetHack"]
    assert forecast_games(validate_config(_broken(lambda c: c["forecast"].update(games=["NetHack"])))) == ["NetHack"]
    assert forecast_games(validate_config(_broken(lambda c: c["forecast"].update(enabled=False)))) == []
    with pytest.raises(ConfigError, match=r"forecast\.games\[0\]: 'Qbert' is not a game of this study"):
        validate_config(_broken(lambda c: c["forecast"].update(games=["Qbert"])))
