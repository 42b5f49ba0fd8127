"""The resume check shared by the Atari and NetHack trainer tests."""

import signal

import pytest
import torch

from ilscaling.flops import budget_label
from ilscaling.io import load_torch
from ilscaling.train import train_bc


def check_resume_is_bitwise(args, train_path, tmp_path, signum=signal.SIGTERM) -> None:
    """A run stopped by `signum` after its first checkpoint and rerun equals an uninterrupted run."""
    train_bc(args, train_path, tmp_path / "straight", tmp_path / "w1", log=lambda *_: None)

    def stop_after_first_checkpoint(message):
        if message.startswith("checkpoint"):
            signal.raise_signal(signum)

    with pytest.raises(SystemExit):
        train_bc(args, train_path, tmp_path / "resumed", tmp_path / "w2", log=stop_after_first_checkpoint)
    assert (tmp_path / "w2" / "resume.pt").exists()
    assert not (tmp_path / "resumed").exists()  # nothing unfinished looks like a finished run
    train_bc(args, train_path, tmp_path / "resumed", tmp_path / "w2", log=lambda *_: None)
    for budget in args.budgets:
        name = f"c{budget_label(budget)}.pt"
        a, b = load_torch(tmp_path / "straight" / name), load_torch(tmp_path / "resumed" / name)
        assert a["train_loss"] == b["train_loss"] and a["samples"] == b["samples"]
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), key
