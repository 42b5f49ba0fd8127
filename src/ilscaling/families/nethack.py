"""The NetHack family (nle, nle.dataset): a heuristic bot's games or NLD-AA, recurrent agents on
the tty screen, played in the seeded environment on a pinned clock (docs/nethack.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ilscaling.families import DataLoad, Family, HeldoutMeasure, Played

NETHACK = "NetHack"
NUM_ACTIONS = 121  # NetHackChallenge's full keyboard
LOADER_MB = 2000  # nle.dataset's TtyrecDataset, its sqlite index and batch buffers


class NetHackTask:
    """(B, unroll) sequences of whole games read through nle.dataset, in a fresh game order each epoch."""

    def __init__(self, args, split_path, rng: np.random.Generator, device):
        from ilscaling.data.nethack import Split

        self.split = Split.load(split_path)
        self.num_frames = self.split.train_frames
        self.args, self.rng, self.device = args, rng, device
        self.model = NetHack().build_model(dataclasses.asdict(args)).to(device)
        self._new_epoch()

    def _new_epoch(self):
        self.games = self.rng.permutation(self.split.train).tolist()
        self.pos = 0
        self._start_pass()

    def _start_pass(self):
        from ilscaling.data.nethack import sequence_batches

        self.batches = sequence_batches(self.split.db, self.split.dataset, self.games,
                                        batch_size=self.args.batch_size, seq_length=self.args.unroll,
                                        play_frames=self.split.play_frames)
        self.carry = self.model.initial_state(self.args.batch_size, self.device)  # every row starts a game

    def _next_batch(self) -> dict:
        """The next batch with at least one label (one of only padding and quit keys trains nothing)."""
        while True:
            batch = next(self.batches, None)
            if batch is None:
                self._new_epoch()
                continue
            self.pos += 1
            if batch["valid"].any():
                return batch

    def loss(self, model):
        import torch
        import torch.nn.functional as F

        batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in self._next_batch().items()}
        logits, carry = model(batch["tty_chars"], batch["tty_colors"], batch["tty_cursor"],
                              batch["prev_action"], batch["done"], self.carry)
        # Truncated backpropagation: the state flows on, its gradient stops at the unroll's edge.
        self.carry = tuple(c.detach() for c in carry)
        valid = batch["valid"]
        return F.cross_entropy(logits[valid].float(), batch["action"][valid]), int(valid.sum())

    def state_dict(self) -> dict:
        return {"games": self.games, "pos": self.pos, "carry": tuple(c.cpu() for c in self.carry)}

    def load_state_dict(self, state: dict) -> None:
        # The loader cannot jump: replay this epoch's pass up to the saved batch (reading is cheap).
        self.games = state["games"]
        self._start_pass()
        for _ in range(state["pos"]):
            next(self.batches)
        self.pos = state["pos"]
        self.carry = tuple(c.to(self.device) for c in state["carry"])


class NetHack(Family):
    section = "nethack"
    data_files = {"train": "split.json", "heldout": "split.json", "card": "card.json", "db": "nld.db"}
    has_expert_distribution = False

    def games(self, config: dict) -> list[str]:
        return [NETHACK] if "nethack" in config else []

    def samples_per_step(self, bc: dict) -> int:
        return bc["batch_size"] * bc["unroll"]

    def training_frames_bound(self, config: dict) -> tuple[float, str] | None:
        # The bot's: at most every training game cut at bot.max_episode_steps, an upper bound (so the
        # epochs a check computes from it are a lower bound). NLD-AA's: only the index can tell.
        from ilscaling.data import heldout_count

        dataset = config["nethack"]["dataset"]
        if dataset["source"] != "bot":
            return None
        bot = config["nethack"]["bot"]
        train_games = bot["games"] - heldout_count(bot["games"], dataset["heldout_fraction"])
        return train_games * bot["max_episode_steps"], "nethack.bot.games"

    def check_config(self, config: dict) -> None:
        from ilscaling.config import ConfigError
        from ilscaling.data import heldout_count

        dataset = config["nethack"]["dataset"]
        if dataset["source"] == "nld" and not dataset["path"]:
            raise ConfigError("config key nethack.dataset.path: source nld needs the path of an NLE ttyrec directory")
        if dataset["source"] == "bot":
            games = config["nethack"]["bot"]["games"]
            train_games = games - heldout_count(games, dataset["heldout_fraction"])
            if config["nethack"]["bc"]["batch_size"] > train_games:
                raise ConfigError(f"config key nethack.bc.batch_size: {config['nethack']['bc']['batch_size']} "
                                  f"sequences per batch, but the bot's {games} games leave {train_games} for "
                                  "training (every row of a batch needs its own game)")

    def missing_data(self, config: dict) -> str | None:
        dataset = config["nethack"]["dataset"]
        if dataset["source"] == "nld" and not Path(dataset["path"]).is_dir():
            return (f"config key nethack.dataset.path: {dataset['path']} is not a folder here: set it to "
                    "NLD-AA's nle_data folder (the one holding */*.xlogfile)")
        return None

    # -- data: the bot's games (or NLD-AA on disk), indexed by nle.dataset ------------------------------
    def expert_args(self, config: dict, game: str) -> tuple[dict, dict]:
        bot = config["nethack"]["bot"]
        return {"games": bot["games"], "max_episode_steps": bot["max_episode_steps"], "env": bot["env"],
                "character": config["nethack"]["character"], "seed": config["seed"]}, \
            {"threads": bot["processes"]}  # the games do not depend on it

    def make_expert(self, game: str, args: dict, out_dir: Path) -> None:
        from ilscaling.games.nethack_bot import record_bot_games

        record_bot_games(out_dir, games=args["games"], processes=args["threads"],
                         max_episode_steps=args["max_episode_steps"], character=args["character"],
                         seed=args["seed"], env_kind=args["env"])

    def dataset_source(self, config: dict, game: str, expert_dir: str) -> str | None:
        dataset = config["nethack"]["dataset"]
        return expert_dir if dataset["source"] == "bot" else dataset["path"]

    def dataset_args(self, config: dict, game: str) -> tuple[dict, dict]:
        dataset = config["nethack"]["dataset"]
        return {"source": dataset["source"], "name": dataset["name"], "filter": dataset["filter"],
                "heldout_fraction": dataset["heldout_fraction"], "batch_size": config["nethack"]["bc"]["batch_size"],
                "seed": config["seed"]}, {"threads": 1}

    def make_dataset(self, game: str, args: dict, source: Path, out_dir: Path) -> None:
        from ilscaling.data.nethack import build_database, dataset_card, make_split
        from ilscaling.io import read_json

        bot_card = read_json(source / "card.json", "bot data card") if args["source"] == "bot" else None
        db = out_dir / self.data_files["db"]
        games = build_database(source, db, args["name"])
        print(f"{source}: {games} games indexed into {db} as {args['name']!r}")
        split = make_split(db, args["name"], out_dir / self.data_files["train"],
                           heldout_fraction=args["heldout_fraction"], seed=args["seed"], where=args["filter"],
                           expected_games=bot_card["games"] if bot_card else None, min_train_games=args["batch_size"])
        dataset_card(split, bot_card, out_dir / self.data_files["card"])

    # -- models and training ------------------------------------------------------------------------------
    def model_config(self, config: dict, game: str) -> dict:
        section = config["nethack"]
        return {"num_actions": NUM_ACTIONS, "unroll": section["bc"]["unroll"], **section["model"]}

    def model_sizes(self, config: dict, game: str, widths) -> dict[int, tuple[int, float]]:
        from ilscaling.models.nethack import model_size
        from ilscaling.models.nethack_config import NetHackModelConfig

        section = config["nethack"]
        return {w: model_size(NetHackModelConfig(hidden=w, unroll=section["bc"]["unroll"], **section["model"]))
                for w in widths}

    def build_model(self, run: dict):
        from ilscaling.models.nethack import NetHackNet
        from ilscaling.models.nethack_config import NetHackModelConfig

        return NetHackNet(NetHackModelConfig(hidden=run["width"], core=run["core"], variant=run["variant"],
                                             unroll=run["unroll"], num_actions=run["num_actions"]))

    def training_task(self, args, train_path: Path, rng, device) -> NetHackTask:
        return NetHackTask(args, train_path, rng, device)

    # -- evaluation ---------------------------------------------------------------------------------------
    def evaluation_args(self, config: dict) -> tuple[dict, dict]:
        evaluation = config["nethack"]["evaluation"]
        # Seeded games do not depend on the workers or the games played at once.
        return {"max_episode_steps": evaluation["max_episode_steps"], "env": evaluation["env"]}, \
            {"device": evaluation["device"], "threads": evaluation["threads"], "processes": evaluation["processes"],
             "envs": evaluation["envs"] or None}

    def heldout_loss(self, model, run: dict, heldout_path: Path, checkpoint_path: Path) -> HeldoutMeasure:
        from ilscaling.evaluate import nethack_heldout_loss

        # The LSTM carries its state, so longer sequences give the same loss in fewer steps; the
        # transformer's attention window is its training unroll.
        unroll = run["unroll"] if run["core"] == "transformer" else max(run["unroll"], 256)
        loss, frames = nethack_heldout_loss(model, heldout_path, batch_size=run["batch_size"], unroll=unroll)
        return HeldoutMeasure(loss, float("nan"), frames, "float32")  # no expert distribution: no KL

    def play(self, model, run: dict, args, device, bf16: bool, log) -> Played:
        from ilscaling.games import nethack as nh
        from ilscaling.games.nethack_vec import play_games

        # In the seeded environment every checkpoint plays the same seeded games (paired, on the
        # pinned clock); challenge games cannot be seeded.
        played = play_games(model, args.episodes, envs=args.envs or args.episodes, processes=args.processes,
                            max_episode_steps=args.max_episode_steps, kind=args.env, seed=args.seed,
                            savedir=args.ttyrec_dir, bf16=bf16, log=log)
        extra = {"max_depths": played.max_depths, "mean_max_depth": float(np.mean(played.max_depths)),
                 "turns": played.turns, "deaths": played.deaths, "env": args.env, "clock": nh.CLOCK_MODES[args.env],
                 "game_seeds": played.game_seeds, "nle_seeds": played.seeds, "game_starts": played.starts,
                 "xlogfile": played.xlogfile, "ttyrec_dir": str(args.ttyrec_dir) if args.ttyrec_dir else None}
        return Played(list(played.scores), list(played.steps), list(played.truncated), played.setup_s,
                      played.play_s, extra)

    # -- resources ---------------------------------------------------------------------------------------
    def data_load(self, config: dict) -> DataLoad:
        section = config["nethack"]
        dataset, bot = section["dataset"], section["bot"]
        # NLD's size is unknown before indexing, so only the bot's held-out frames are counted.
        frames = bot["games"] * bot["max_episode_steps"] if dataset["source"] == "bot" else 0
        processes = section["evaluation"]["processes"]
        return DataLoad(training_mb=LOADER_MB, heldout_frames=frames * dataset["heldout_fraction"],
                        evaluation_workers=processes, evaluation_mb=1000 + 300 * processes)

    def expert_request(self, config: dict, attempt: int):
        from ilscaling import job_resources

        return job_resources.bot_games(config, attempt)

    def dataset_request(self, config: dict, attempt: int):
        from ilscaling import job_resources

        return job_resources.nethack_dataset(config, attempt)
