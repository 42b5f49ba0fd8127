"""NetHack BC end to end on real bot recordings: the trainer's contract, resume, and evaluation."""

import signal

import numpy as np
import pytest
from train_checks import check_resume_is_bitwise

from ilscaling.data.nethack import make_split
from ilscaling.evaluate import EvalArgs, evaluate_checkpoint
from ilscaling.flops import budget_label
from ilscaling.games import nethack as nh
from ilscaling.io import load_torch, read_json
from ilscaling.models.nethack import model_size
from ilscaling.models.nethack_config import NetHackModelConfig
from ilscaling.train import BCArgs, train_bc


@pytest.fixture(scope="module")
def split_file(recorded, tmp_path_factory):
    _, db, _ = recorded
    path = tmp_path_factory.mktemp("split") / "split.json"
    make_split(db, "bot", path, heldout_fraction=0.25, seed=0, log=lambda *_: None)
    return path


def _args(core="lstm", **overrides):
    _, per_sample = model_size(NetHackModelConfig(hidden=16, core=core, variant="reduced", unroll=8))
    step = per_sample * 2 * 8  # a full batch: 2 sequences of 8 frames
    values = dict(game="NetHack", width=16, num_actions=121, batch_size=2, unroll=8, core=core, variant="reduced",
                  lr=1e-3, budgets=[step * 3, step * 20, step * 70], device="cpu")
    values.update(overrides)
    return BCArgs(**values)


@pytest.mark.parametrize("core", ["lstm", "transformer"])
def test_checkpoints_at_budgets_through_epochs(tmp_path, split_file, core):
    args = _args(core)
    records = train_bc(args, split_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    assert [r["budget"] for r in records] == sorted(args.budgets)
    split = read_json(split_file)
    last = load_torch(tmp_path / "run" / f"c{budget_label(max(args.budgets))}.pt")
    assert last["epochs"] == pytest.approx(last["samples"] / split["train_frames"])
    assert last["epochs"] > 1  # the run went through the training games more than once
    assert last["config"]["core"] == core and last["device"] == "cpu" and last["autocast"] is None
    assert last["params"] == model_size(NetHackModelConfig(hidden=16, core=core, variant="reduced", unroll=8))[0]


def test_resumed_run_is_bitwise_identical(tmp_path, split_file):
    check_resume_is_bitwise(_args(), split_file, tmp_path, signal.SIGUSR1)


def test_evaluation_records_each_game(tmp_path, split_file):
    args = _args(budgets=[_args().budgets[0]])
    train_bc(args, split_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    checkpoint = tmp_path / "run" / f"c{budget_label(args.budgets[0])}.pt"
    result = evaluate_checkpoint(checkpoint, split_file, tmp_path / "eval.json", EvalArgs(episodes=3, seed=0,
                                 max_episode_steps=40, processes=2, envs=2, ttyrec_dir=tmp_path / "ttyrecs",
                                 device="cpu"), log=lambda *_: None)
    assert result["device"] == "cpu" and result["autocast"] is None and result["rollout_steps_per_s"] > 0
    assert result["rollout_play_steps_per_s"] >= result["rollout_steps_per_s"] and result["rollout_setup_s"] > 0
    assert result["game"] == "NetHack" and result["heldout_frames"] == read_json(split_file)["heldout_frames"]
    assert np.isfinite(result["loss"]) and 0 < result["loss"] < np.log(121) + 1
    assert len(result["episode_returns"]) == len(result["max_depths"]) == len(result["deaths"]) == 3
    assert all(d >= 1 for d in result["max_depths"]) and all(length <= 40 for length in result["episode_lengths"])
    assert result["return"] == pytest.approx(np.mean(result["episode_returns"]))
    # The score comes from the frames (NLE zeroes blstats at death), turns and depth from NetHack's
    # own record of each game, matched to it by its ttyrec: environment 0 played games 0 and 1.
    for turns, depth, line in zip(result["turns"], result["max_depths"], result["xlogfile"]):
        assert turns == line["turns"] and depth == line["maxlvl"]
    assert [line["ttyrecname"].split(".")[-3] for line in result["xlogfile"]] == ["0", "1", "0"]
    # Every game was kept and ended properly: one xlogfile line each.
    assert len(list((tmp_path / "ttyrecs").glob("*/*.ttyrec*"))) == 3
    # Seeded games: their seeds are recorded, and NetHack started each game from them.
    assert result["env"] == "seeded" and result["clock"].startswith("pinned")
    assert result["game_seeds"] == [list(nh.game_seeds_of(0, "evaluation", g)) for g in range(3)]
    assert [[s["core"], s["disp"], s["reseed"]] for s in result["nle_seeds"]] == [
        [*seeds, False] for seeds in result["game_seeds"]]
    assert len(result["game_starts"]) == 3


def test_heldout_loss_of_the_lstm_does_not_depend_on_the_sequence_length(tmp_path, split_file):
    from ilscaling.evaluate import load_bc_model, nethack_heldout_loss

    args = _args(budgets=[_args().budgets[0]])
    train_bc(args, split_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    model = load_bc_model(load_torch(tmp_path / "run" / f"c{budget_label(args.budgets[0])}.pt"))
    short, frames = nethack_heldout_loss(model, split_file, batch_size=2, unroll=8)
    long, same_frames = nethack_heldout_loss(model, split_file, batch_size=2, unroll=256)
    assert frames == same_frames and long == pytest.approx(short, rel=1e-5)


def _tiny_model(seed=0):
    import torch

    from ilscaling.models.nethack import NetHackNet

    torch.manual_seed(seed)
    return NetHackNet(NetHackModelConfig(hidden=16, core="lstm", variant="reduced", unroll=8)).eval()


@pytest.mark.parametrize("processes, kind", [(1, "challenge"), (2, "challenge"), (1, "seeded")])
def test_play_games_plays_each_quota_in_or_out_of_process(tmp_path, processes, kind):
    from ilscaling.games.nethack_vec import play_games

    played = play_games(_tiny_model(), 3, envs=2, processes=processes, max_episode_steps=25, kind=kind, seed=0,
                        savedir=tmp_path, log=lambda *_: None)
    # Games 0 and 1 on environment 0, game 2 on environment 1, whatever the games' lengths.
    assert len(played.scores) == len(played.steps) == 3 and all(1 <= s <= 25 for s in played.steps)
    assert played.env_steps == sum(played.steps) and 0 < played.setup_s < played.wall_s
    assert len(list(tmp_path.glob("env0000/*.ttyrec*"))) == 2 and len(list(tmp_path.glob("env0001/*.ttyrec*"))) == 1
    for turns, depth, line in zip(played.turns, played.max_depths, played.xlogfile):
        assert depth == line["maxlvl"] and turns == line["turns"]
    assert [line["ttyrecname"].split(".")[-3] for line in played.xlogfile] == ["0", "1", "0"]  # NLE's episodes
    assert len(played.starts) == 3 and set(played.starts[0]) == {"full_moon", "new_moon", "friday_13th"}


def test_seeded_evaluation_is_paired_and_does_not_depend_on_how_games_are_spread():
    """Every game g is the game of its seeds, sampled from g's own stream: the same games come out
    of one environment in this... worker, or three environments in two workers; another model plays
    the same dungeons."""
    from ilscaling.games.nethack_vec import play_games

    def play(model, envs, processes, seed=5):
        return play_games(model, 3, envs=envs, processes=processes, max_episode_steps=60, kind="seeded", seed=seed,
                          log=lambda *_: None)

    model = _tiny_model()
    spread, single = play(model, 3, 2), play(model, 1, 1)
    for field in ("scores", "steps", "turns", "max_depths", "deaths", "game_seeds", "seeds", "starts"):
        assert getattr(spread, field) == getattr(single, field), field
    other = play(_tiny_model(seed=1), 3, 2)
    assert other.game_seeds == spread.game_seeds == [list(nh.game_seeds_of(5, "evaluation", g)) for g in range(3)]
    assert other.steps != spread.steps or other.scores != spread.scores or other.turns != spread.turns
    assert play(model, 3, 2, seed=6).game_seeds != spread.game_seeds


def test_a_nethack_checkpoint_with_atari_demonstrations_is_named(tmp_path, split_file, demos):
    from ilscaling.io import DataFileError

    args = _args(budgets=[_args().budgets[0]])
    train_bc(args, split_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    demos.save(tmp_path / "heldout.npz")
    with pytest.raises(DataFileError, match=r"NetHack checkpoint, so the held-out data must be its split\.json"):
        evaluate_checkpoint(tmp_path / "run" / f"c{budget_label(args.budgets[0])}.pt", tmp_path / "heldout.npz",
                            tmp_path / "eval.json", EvalArgs(episodes=1, seed=0, max_episode_steps=10, device="cpu"), log=lambda *_: None)   # was: UnicodeDecodeError
    assert not (tmp_path / "eval.json").exists()
