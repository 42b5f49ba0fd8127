"""Game families: everything that differs between Atari and NetHack, one class each.

The workflow and the library never ask a game's name what to do; they ask its family
(`family_of(game)`), which owns the game's config section, its data (how the expert's play is made
and which files hold it), its model and size, its training task, its held-out loss and rollouts,
and the numbers its resource estimates need. Every game keeps one output layout,
`results/<Game>/{expert,data,runs,eval}` (workflow/rules/common.smk).

Adding a family: a subclass of `Family` in a module of this package, listed in `FAMILIES`, a
section of its own in the config schema, and its CLI-free functions (model, environment, data).
The rules stay as they are. Heavy imports (torch, ale-py, nle) stay inside the methods, so the
config and the fits import this package for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class HeldoutMeasure:
    """A checkpoint's held-out loss, in nats per frame."""

    cross_entropy: float
    """-log π_BC(recorded action), the mean over every held-out frame."""
    kl: float
    """KL(π_expert ‖ π_BC) against the expert's stored distribution; NaN where the family has none."""
    frames: int
    """Held-out frames counted."""
    precision: str
    """The arithmetic of the loss (recorded in the evaluation)."""


@dataclass(frozen=True)
class Played:
    """Games a checkpoint's sampled policy played."""

    returns: list[float]
    lengths: list[int]
    truncated: list[bool]
    setup_s: float
    play_s: float
    extra: dict
    """What the family records of its games beyond return and length (the evaluation's extra keys)."""


@dataclass(frozen=True)
class DataLoad:
    """What a family's jobs hold in memory and step, for the resource estimates (job_resources)."""

    training_mb: float
    """A BC run's data in memory."""
    heldout_frames: float
    """Frames of the held-out loss pass (0 where unknown before the data exist)."""
    evaluation_workers: int
    """Processes or threads stepping an evaluation's games."""
    evaluation_mb: float
    """An evaluation's data and game workers in memory."""


class Family:
    """One game family. Subclasses set the class attributes and implement the methods."""

    section: ClassVar[str]
    """The config section of the family's games (atari, nethack)."""
    data_files: ClassVar[dict[str, str]]
    """The dataset stage's files under results/<Game>/data/, by role: train, heldout, card, and any others."""
    has_expert_distribution: ClassVar[bool]
    """Whether the demonstrations store the expert's action distribution (so held-out KL exists)."""

    # -- the study ---------------------------------------------------------------------------------
    def games(self, config: dict) -> list[str]:
        raise NotImplementedError

    def check_config(self, config: dict) -> None:
        """Checks of the family's config section a schema cannot express (config.ConfigError, naming the key)."""

    def missing_data(self, config: dict) -> str | None:
        """The data the study reads from this machine that are not here, as a config error names them."""
        return None

    def samples_per_step(self, bc: dict) -> int:
        """Frames in one gradient step of a bc section."""
        return bc["batch_size"]

    def training_frames_bound(self, config: dict) -> tuple[float, str] | None:
        """Training frames the game's data will hold, known before any job, and the key that says
        so; None where only the data can tell."""
        raise NotImplementedError

    # -- data ----------------------------------------------------------------------------------------
    def expert_args(self, config: dict, game: str) -> tuple[dict, dict]:
        """The expert stage's arguments from the config: (what it computes, how fast: threads...)."""
        raise NotImplementedError

    def make_expert(self, game: str, args: dict, out_dir: Path) -> None:
        """The source of expert play, into `out_dir`."""
        raise NotImplementedError

    def dataset_source(self, config: dict, game: str, expert_dir: str) -> str | None:
        """What the dataset stage reads: the expert stage's folder, or data already on disk."""
        return expert_dir

    def dataset_args(self, config: dict, game: str) -> tuple[dict, dict]:
        """The dataset stage's arguments from the config: (what it computes, how fast)."""
        raise NotImplementedError

    def make_dataset(self, game: str, args: dict, source: Path, out_dir: Path) -> None:
        """The demonstrations, their split and their card.json, into `out_dir` (data_files)."""
        raise NotImplementedError

    # -- models and training -------------------------------------------------------------------------
    def model_config(self, config: dict, game: str) -> dict[str, Any]:
        """The BCArgs fields of the family's model a game's runs train with, beyond the width
        (num_actions; NetHack's unroll, core and variant)."""
        raise NotImplementedError

    def model_sizes(self, config: dict, game: str, widths) -> dict[int, tuple[int, float]]:
        """(parameters, training FLOPs per sample) of each width."""
        raise NotImplementedError

    def build_model(self, run: dict):
        """The untrained model of a run's config (BCArgs as a dict, as every checkpoint holds it)."""
        raise NotImplementedError

    def training_task(self, args, train_path: Path, rng, device):
        """The run's task (train.py): its model, its batches and its loss."""
        raise NotImplementedError

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluation_args(self, config: dict) -> tuple[dict, dict]:
        """The evaluation's arguments from the config beyond episodes and seed: (computed, speed)."""
        raise NotImplementedError

    def heldout_loss(self, model, run: dict, heldout_path: Path, checkpoint_path: Path) -> HeldoutMeasure:
        raise NotImplementedError

    def play(self, model, run: dict, args, device, bf16: bool, log) -> Played:
        """`args.episodes` games of the sampled policy (args: evaluate.EvalArgs)."""
        raise NotImplementedError

    # -- resources -----------------------------------------------------------------------------------
    def data_load(self, config: dict) -> DataLoad:
        raise NotImplementedError

    def expert_request(self, config: dict, attempt: int):
        raise NotImplementedError

    def dataset_request(self, config: dict, attempt: int):
        raise NotImplementedError


def families() -> list[Family]:
    from ilscaling.families.atari import Atari
    from ilscaling.families.nethack import NetHack

    return [Atari(), NetHack()]


def family_of(game: str) -> Family:
    """The family of a game: NetHack's, or Atari's for every other name (ale-py says whether it exists)."""
    from ilscaling.families.atari import Atari
    from ilscaling.families.nethack import NETHACK, NetHack

    return NetHack() if game == NETHACK else Atari()


def build_model(run: dict):
    """The untrained model of a run's config (BCArgs as a dict, as every checkpoint holds it)."""
    return family_of(run["game"]).build_model(run)


def games_of(config: dict) -> list[str]:
    """Every game of the study, family by family (Atari's in config order, then NetHack)."""
    return [game for family in families() if family.section in config for game in family.games(config)]
