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
    # The work folder keeps the finished run (links to the same files), not its resume state.
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(p.name for p in (tmp_path / "run").iterdir())
    assert all((tmp_path / "work" / p.name).samefile(p) for p in (tmp_path / "run").iterdir())


def test_resumed_run_is_bitwise_identical(tmp_path, train_file):
    check_resume_is_bitwise(_args(), train_file, tmp_path, signal.SIGTERM)


def test_ctrl_c_writes_the_resume_state(tmp_path, train_file):
    check_resume_is_bitwise(_args(), train_file, tmp_path, signal.SIGINT)


def test_a_finished_run_is_restored_not_retrained(tmp_path, train_file):
    """Snakemake interrupted while the job finished marks it incomplete; --rerun-incomplete deletes
    the output folder and runs the job again: the finished run comes back without a step."""
    import shutil

    first = train_bc(_args(), train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    shutil.rmtree(tmp_path / "run")
    logged = []
    again = train_bc(_args(num_threads=2), train_file, tmp_path / "run", tmp_path / "work", log=logged.append)
    assert again == first and any("finished" in line for line in logged)
    assert not any(line.startswith("step ") or line.startswith("checkpoint") for line in logged)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    # Other results settings: the finished run is obsolete, and the run trains anew.
    logged.clear()
    train_bc(_args(lr=2e-3), train_file, tmp_path / "other", tmp_path / "work", log=logged.append)
    assert any("other settings (lr: 0.001 -> 0.002)" in line for line in logged)
    assert any(line.startswith("checkpoint") for line in logged)


def test_a_kill_inside_finish_is_completed_by_the_next_try(tmp_path, train_file, monkeypatch):
    import ilscaling.train as train

    real_link, linked = train.link_into, []

    def killed_after_one(source, target):
        if linked:
            raise KeyboardInterrupt("killed")  # as a SIGKILL would leave it, after one file
        linked.append(target)
        real_link(source, target)

    monkeypatch.setattr(train, "link_into", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        train_bc(_args(), train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    monkeypatch.setattr(train, "link_into", real_link)
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing partial looks finished
    records = train_bc(_args(), train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    assert len(records) == 3 and (tmp_path / "run" / "metrics.json").exists()
    assert len(list((tmp_path / "run").glob("c*.pt"))) == 3


def test_a_resume_names_the_setting_that_differs_and_ignores_speed_settings(tmp_path, train_file):
    def stop_after_first_checkpoint(message):
        if message.startswith("checkpoint"):
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(SystemExit):
        train_bc(_args(), train_file, tmp_path / "run", tmp_path / "work", log=stop_after_first_checkpoint)
    with pytest.raises(ValueError, match=r"other settings \(batch_size: 16 -> 32\)"):
        train_bc(_args(batch_size=32), train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    logged = []
    train_bc(_args(num_threads=2, resume_every_s=5.0, channels_last=False), train_file, tmp_path / "run",
             tmp_path / "work", log=logged.append)
    assert any(line.startswith("resumed from") for line in logged)


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


def test_a_run_that_would_repeat_its_data_too_often_stops_before_its_first_step(tmp_path, train_file, demos):
    from ilscaling.train import TooManyEpochs

    args = _args()
    epochs = max(args.budgets) / WidthCNN(2, 4).train_flops_per_sample() / len(demos)
    with pytest.raises(TooManyEpochs, match=rf"Breakout width 2 seed 0: its largest budget .* would show it its "
                                            rf"{len(demos):,} training frames {epochs:.2f} times, more than max_epochs"):
        train_bc(_args(max_epochs=epochs * 0.99), train_file, tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    # At the bound it trains; the bound changes no result (a speed field: the finished run is restored).
    records = train_bc(_args(max_epochs=epochs * 1.01), train_file, tmp_path / "run", tmp_path / "work",
                       log=lambda *_: None)
    assert records[-1]["epochs"] == pytest.approx(epochs, abs=args.batch_size / len(demos))  # within the last step


def test_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "c1e10.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFileError, match="c1e10.pt"):
        load_torch(tmp_path / "c1e10.pt")


def test_the_learning_rate_scales_with_the_width_from_its_reference(tmp_path, train_file):
    """lr x reference / width: width 2 at lr 2e-3 with reference width 1 trains exactly as lr 1e-3."""
    import torch

    from ilscaling.train import learning_rate

    assert learning_rate(_args(lr=1e-3)) == 1e-3
    assert learning_rate(_args(width=256, lr=1e-3, lr_reference_width=64)) == pytest.approx(2.5e-4)
    plain = train_bc(_args(lr=1e-3), train_file, tmp_path / "a", tmp_path / "wa", log=lambda *_: None)
    scaled = train_bc(_args(lr=2e-3, lr_reference_width=1), train_file, tmp_path / "b", tmp_path / "wb",
                      log=lambda *_: None)
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in scaled]
    last = f"c{budget_label(plain[-1]['budget'])}.pt"
    a, b = load_torch(tmp_path / "a" / last)["model"], load_torch(tmp_path / "b" / last)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
