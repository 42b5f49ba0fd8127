"""The Atari family (ale-py): a PPO expert's play, width-scaled Nature CNNs on single frames."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ilscaling.data.atari import Demonstrations, epoch_order
from ilscaling.families import DataLoad, Family, HeldoutMeasure, Played

MB = 2**20
FRAME_BYTES = 84 * 84  # demonstrations are stored as single uint8 frames


class AtariTask:
    """Single 4-frame observations in a fresh random order each epoch.

    `data` lets runs that train in one process (train_batched.py) share one game's frames.
    """

    def __init__(self, args, train_path, rng: np.random.Generator, device, data=None):
        self.data = data if data is not None else Demonstrations.load(train_path)
        if len(self.data) == 0:
            raise ValueError(f"{train_path} holds no training frames")
        self.num_frames = len(self.data)
        self.args, self.rng, self.device = args, rng, device
        self.model = Atari().build_model(dataclasses.asdict(args)).to(device)
        self.order, self.pos = epoch_order(self.num_frames, rng), 0

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames (b, 4, 84, 84) and int64 actions (b,) of the next batch (b < batch_size at an epoch's end)."""
        if self.pos >= len(self.order):
            self.order, self.pos = epoch_order(self.num_frames, self.rng), 0
        index = self.order[self.pos: self.pos + self.args.batch_size]
        self.pos += len(index)
        return self.data.stacked(index), self.data.actions[index].astype(np.int64)

    def loss(self, model):
        """Loss of `model` (the task's, perhaps compiled) on the next batch, and its number of samples."""
        import torch
        import torch.nn.functional as F

        frames, actions = self.next_batch()
        frames = torch.from_numpy(frames).to(self.device, non_blocking=True)
        actions = torch.from_numpy(actions).to(self.device, non_blocking=True)
        return F.cross_entropy(model(frames).float(), actions), len(actions)

    def state_dict(self) -> dict:
        return {"order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"], state["pos"]


class Atari(Family):
    section = "atari"
    data_files = {"train": "train.npz", "heldout": "heldout.npz", "card": "card.json"}
    has_expert_distribution = True

    def games(self, config: dict) -> list[str]:
        return list(config.get("atari", {}).get("games", []))

    def training_frames_bound(self, config: dict) -> tuple[float, str]:
        # Episodes are split whole, so the exact count is the run's own check.
        demos = config["atari"]["demonstrations"]
        return demos["frames"] * (1 - demos["heldout_fraction"]), "atari.demonstrations.frames"

    def check_config(self, config: dict) -> None:
        from ilscaling.config import ConfigError
        from ilscaling.games.atari import check_game

        for i, game in enumerate(config["atari"]["games"]):
            try:
                check_game(game)
            except ValueError as err:
                raise ConfigError(f"config key atari.games[{i}]: {err}") from None
        demos = config["atari"]["demonstrations"]
        if demos["frames"] <= demos["max_episode_steps"]:
            raise ConfigError(f"config key atari.demonstrations.frames: {demos['frames']} frames may be a single "
                              f"episode (an episode lasts up to atari.demonstrations.max_episode_steps = "
                              f"{demos['max_episode_steps']} steps), and the split needs whole episodes for both "
                              f"training and held out: record more than {demos['max_episode_steps']} frames")

    # -- data: a PPO expert, then its recorded play -----------------------------------------------------
    def expert_args(self, config: dict, game: str) -> tuple[dict, dict]:
        expert = config["atari"]["expert"]
        return {**{key: value for key, value in expert.items() if key != "threads"}, "seed": config["seed"]}, \
            {"threads": expert["threads"]}

    def make_expert(self, game: str, args: dict, out_dir: Path) -> None:
        from ilscaling.io import provenance, save_torch, write_json
        from ilscaling.ppo import PPOArgs, train_expert

        ppo = {key: value for key, value in args.items() if key != "threads"}
        expert = train_expert(game, PPOArgs(**ppo, num_threads=args["threads"]))
        expert["provenance"] = provenance()
        save_torch(expert, out_dir / "expert.pt")
        write_json({key: value for key, value in expert.items() if key != "state_dict"}, out_dir / "summary.json")

    def dataset_args(self, config: dict, game: str) -> tuple[dict, dict]:
        demos = config["atari"]["demonstrations"]
        return {**demos, "seed": config["seed"]}, {"threads": 2}

    def make_dataset(self, game: str, args: dict, source: Path, out_dir: Path) -> None:
        import torch

        from ilscaling.data.atari import write_demonstrations
        from ilscaling.evaluate import heldout_loss
        from ilscaling.games.atari_demonstrations import record_demonstrations
        from ilscaling.io import load_torch
        from ilscaling.ppo import load_expert_policy

        torch.set_num_threads(args["threads"])
        expert = load_torch(source / "expert.pt", "expert checkpoint")
        if expert["config"]["game"] != game:
            raise ValueError(f"{source}/expert.pt is a {expert['config']['game']} expert, not {game}'s")
        policy = load_expert_policy(expert)
        episodes = record_demonstrations(game, policy, args["frames"], seed=args["seed"], num_envs=args["num_envs"],
                                         max_episode_steps=args["max_episode_steps"], num_threads=args["threads"],
                                         greedy=args["greedy"], log=print)
        # The expert network's own losses on its demonstrations. Cross entropy: the held-out loss a
        # perfect imitator would reach (about the expert's policy entropy when it samples; near 0 when
        # greedy). KL to the policy played: 0 up to rounding when it samples (the network is that
        # policy); equal to the cross entropy when greedy (the played policy is the one-hot).
        all_frames = Demonstrations.from_episodes(episodes.frames, episodes.actions, episodes.rewards,
                                                  range(len(episodes.actions)), episodes.policies)
        expert_loss = heldout_loss(policy, all_frames)
        card = write_demonstrations(episodes, out_dir, args["heldout_fraction"], args["seed"], game,
                                    greedy=args["greedy"], expert_greedy_eval_return=expert["eval_mean_return"],
                                    episodes_truncated=int(episodes.truncated.sum()),
                                    expert_cross_entropy=expert_loss.cross_entropy, expert_kl=expert_loss.kl)
        print(f"{game}: {card['episodes']} episodes, {card['frames']} frames, {card['bytes'] / 1e6:.1f} MB, "
              f"expert mean return {card['expert_mean_return']:.1f}, expert cross entropy "
              f"{expert_loss.cross_entropy:.3f}, expert KL to the policy played {expert_loss.kl:.3g}")

    # -- models and training ------------------------------------------------------------------------------
    def model_config(self, config: dict, game: str) -> dict:
        from ilscaling.games.atari import num_actions

        return {"num_actions": num_actions(game)}

    def model_sizes(self, config: dict, game: str, widths) -> dict[int, tuple[int, float]]:
        from ilscaling.games.atari import num_actions
        from ilscaling.models.atari import model_size

        return {w: model_size(w, num_actions(game)) for w in widths}

    def build_model(self, run: dict):
        from ilscaling.models.atari import WidthCNN

        return WidthCNN(run["width"], run["num_actions"], channels_last=run["channels_last"])

    def training_task(self, args, train_path: Path, rng, device) -> AtariTask:
        return AtariTask(args, train_path, rng, device)

    # -- evaluation ---------------------------------------------------------------------------------------
    def evaluation_args(self, config: dict) -> tuple[dict, dict]:
        evaluation = config["atari"]["evaluation"]
        return {"max_episode_steps": evaluation["max_episode_steps"]}, \
            {"device": evaluation["device"], "threads": evaluation["threads"]}

    def heldout_loss(self, model, run: dict, heldout_path: Path, checkpoint_path: Path) -> HeldoutMeasure:
        from ilscaling.evaluate import HELDOUT_LOSS_PRECISION, heldout_loss
        from ilscaling.io import DataFileError

        demos = Demonstrations.load(heldout_path)
        num_actions = run["num_actions"]
        if len(demos) and (int(demos.actions.max()) >= num_actions or demos.expert_probs.shape[1] != num_actions):
            raise DataFileError(f"{heldout_path} has actions up to {int(demos.actions.max())} and an expert policy "
                                f"over {demos.expert_probs.shape[1]} actions, but the model of {checkpoint_path} has "
                                f"{num_actions} ({run['game']}): another game's demonstrations?")
        losses = heldout_loss(model, demos)
        return HeldoutMeasure(losses.cross_entropy, losses.kl, len(demos), HELDOUT_LOSS_PRECISION)

    def play(self, model, run: dict, args, device, bf16: bool, log) -> Played:
        import torch

        from ilscaling.games.atari_play import play_episodes

        # Every checkpoint plays on the same environment seeds (common random numbers).
        played = play_episodes(run["game"], model, args.episodes, seed=args.seed, greedy=False,
                               max_episode_steps=args.max_episode_steps, num_threads=args.threads,
                               generator=torch.Generator().manual_seed(args.seed), envs=args.envs,
                               device=device, bf16=bf16, log=log)
        return Played(list(played.returns), list(played.lengths), list(played.truncated), played.setup_s,
                      played.play_s, {})

    # -- resources ---------------------------------------------------------------------------------------
    def data_load(self, config: dict) -> DataLoad:
        demos = config["atari"]["demonstrations"]
        heldout = demos["frames"] * demos["heldout_fraction"]
        return DataLoad(training_mb=demos["frames"] * FRAME_BYTES * 2 / MB,  # the arrays and one copy
                        heldout_frames=heldout, evaluation_workers=config["atari"]["evaluation"]["threads"],
                        evaluation_mb=1000 + heldout * FRAME_BYTES * 2 / MB)

    def expert_request(self, config: dict, attempt: int):
        from ilscaling import job_resources

        return job_resources.expert(config, attempt)

    def dataset_request(self, config: dict, attempt: int):
        from ilscaling import job_resources

        return job_resources.demonstrations(config, attempt)
