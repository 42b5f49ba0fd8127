"""The BC models of each game family; `build_model` rebuilds one from a run's saved config."""

from __future__ import annotations

from torch import nn

from ilscaling.config import NETHACK


def build_model(config: dict) -> nn.Module:
    """The untrained model of a run's config (BCArgs as a dict, as saved in every checkpoint)."""
    if config["game"] == NETHACK:
        from ilscaling.models.nethack import NetHackNet
        from ilscaling.models.nethack_config import NetHackModelConfig

        return NetHackNet(NetHackModelConfig(hidden=config["width"], core=config["core"], variant=config["variant"],
                                             unroll=config["unroll"], num_actions=config["num_actions"]))
    from ilscaling.models.atari import WidthCNN

    # Checkpoints written before the option existed lack the key: NCHW, as they were trained.
    return WidthCNN(config["width"], config["num_actions"], channels_last=config.get("channels_last", False))
