import signal

import pytest
from train_checks import check_resume_is_bitwise

from ilscaling.flops import budget_label
from ilscaling.io import DataFileError, load_torch
from ilscaling.models.atari import WidthCNN
from ilscaling.train import BCArgs, train_bc


@pytest.fixture
def train_file(tmp_path, demos):
    demos.save(tmp_path / "train.npz")
    return tmp_path / "train.npz"


def _args(**overrides):
    per_sample = WidthCNN(2, 4).train_flops_per_sample()
    values = dict(game="Breakout", width=2, num_actions=4, batch_size=16,
                  budgets=[per_sample * 16 * 3, per_sample * 16 * 10.5, per_sample * 16 * 25])
    values.update(overrides)
    return BCArgs(**values)


def test_checkpoints_at_budget_crossings(tmp_path, train_file, demos):
    args = _args()
    records = train_bc(args, train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    assert [r["budget"] for r in records] == sorted(args.budgets)
    per_step = WidthCNN(2, 4).train_flops_per_sample() * 16
    for record in records:
        checkpoint = load_torch(tmp_path / "run" / f"c{budget_label(record['budget'])}.pt")
        # The first step at or past the budget, never one more.
        assert record["budget"] <= checkpoint["flops"] < record["budget"] + per_step
        assert checkpoint["params"] == WidthCNN(2, 4).num_params()
        assert checkpoint["config"]["width"] == 2 and "versions" in checkpoint["provenance"]
        assert checkpoint["epochs"] == pytest.approx(checkpoint["samples"] / len(demos))
    assert len(list((tmp_path / "run").glob("c*.pt"))) == 3  # one per budget; the run stopped at the largest
    assert not (tmp_path / "work").exists()  # the finished run left no work folder


def test_resumed_run_is_bitwise_identical(tmp_path, train_file):
    check_resume_is_bitwise(_args(), train_file, tmp_path, signal.SIGTERM)


def test_gradient_clipping_bounds_each_step(tmp_path, train_file):
    """max_grad_norm clips every step of these runs (0.01 is far below their gradients): the first step
    moves the weights by Adam's lr-sized step either way, later steps differ; a loose clip changes nothing."""
    import torch

    def final_weights(name, **overrides):
        train_bc(_args(**overrides), train_file, tmp_path / name, tmp_path / f"{name}-work", log=lambda *_: None)
        checkpoint = load_torch(tmp_path / name / f"c{budget_label(max(_args().budgets))}.pt")
        assert checkpoint["config"]["max_grad_norm"] == overrides.get("max_grad_norm")
        return checkpoint["model"]

    plain, clipped, loose = final_weights("plain"), final_weights("clipped", max_grad_norm=0.01), \
        final_weights("loose", max_grad_norm=1e9)
    assert any(not torch.equal(plain[k], clipped[k]) for k in plain)
    assert all(torch.equal(plain[k], loose[k]) for k in plain)


def test_bad_budgets_and_missing_data(tmp_path, train_file):
    with pytest.raises(ValueError, match="budgets"):
        train_bc(_args(budgets=[]), train_file, tmp_path / "run", tmp_path / "w")
    with pytest.raises(ValueError, match="budgets"):
        train_bc(_args(budgets=[-1.0]), train_file, tmp_path / "run", tmp_path / "w")
    with pytest.raises(DataFileError, match="missing.npz"):
        train_bc(_args(), tmp_path / "missing.npz", tmp_path / "run", tmp_path / "w")


def test_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "c1e10.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFileError, match="c1e10.pt"):
        load_torch(tmp_path / "c1e10.pt")
