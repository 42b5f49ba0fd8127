"""Batched training (train_batched.py): each member equals its solo run, and resumes bitwise."""

import dataclasses
import signal
from pathlib import Path

import pytest
import torch
from conftest import synthetic_demonstrations

from ilscaling.flops import budget_label
from ilscaling.io import load_torch, read_json
from ilscaling.models.atari import WidthCNN
from ilscaling.train import BCArgs, train_bc
from ilscaling.train_batched import Member, train_batched

WIDTH, BATCH = 2, 16


@pytest.fixture
def group(tmp_path):
    """Three runs of width 2: two games with 4 and 6 actions (two seeds of the first, sharing its data),
    different budgets (they leave the stack at different steps), each past an epoch's short batch."""
    paths = {}
    for game, actions, seed in (("Breakout", 4, 0), ("Qbert", 6, 1)):
        paths[game] = tmp_path / f"{game}.npz"
        synthetic_demonstrations(num_actions=actions, seed=seed).save(paths[game])

    def member(game, actions, seed, steps):
        per_step = WidthCNN(WIDTH, actions).train_flops_per_sample() * BATCH
        args = BCArgs(game=game, width=WIDTH, num_actions=actions, seed=seed, batch_size=BATCH,
                      budgets=[per_step * s for s in steps])
        return args, paths[game]

    return [member("Breakout", 4, 0, [3, 10.5, 25]), member("Qbert", 6, 1, [5, 21]),
            member("Breakout", 4, 2, [8, 30])]


def members(group, root):
    return [Member(args, train, root / "runs" / f"{args.game}-s{args.seed}", root / "work" / f"{args.game}-s{args.seed}")
            for args, train in group]


def quiet(*_):
    pass


@pytest.fixture
def exact_arithmetic(monkeypatch):
    """Settings under which a member and its solo run must agree to float32 rounding: on CUDA, no bf16
    autocast and no TF32. Under bf16, vmap's grouped convolutions round otherwise than one model's
    (an H200 left the weights 3.7e-3 apart after 30 steps); test_batched_bf16_on_cuda covers that."""
    if not torch.cuda.is_available():
        return {}
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    return {"bf16": False}


def train_group_and_solo(tmp_path, group, vectorize):
    """Train `group` batched, then each member alone; yield (member, solo folder)."""
    batched = members(group, tmp_path / "batched")
    train_batched(batched, tmp_path / "batched" / "group", vectorize=vectorize, log=quiet)
    for member in batched:
        solo_dir = tmp_path / "solo" / member.out_dir.name
        train_bc(member.args, member.train, solo_dir, tmp_path / "solo-work" / member.out_dir.name, log=quiet)
        yield member, solo_dir


@pytest.mark.parametrize("vectorize, max_grad_norm", [("loop", None), ("vmap", None), ("loop", 0.05)])
def test_batched_equals_solo(tmp_path, group, vectorize, max_grad_norm, exact_arithmetic):
    """Each member's checkpoints equal its solo run's, also when each member's gradient is clipped
    (0.05: well below these runs' gradient norms, so every step is clipped)."""
    group = [(dataclasses.replace(args, max_grad_norm=max_grad_norm, **exact_arithmetic), train)
             for args, train in group]
    for member, solo_dir in train_group_and_solo(tmp_path, group, vectorize):
        assert not (tmp_path / "batched" / "group").exists()  # the group's resume state is gone
        assert not (member.work_dir / "resume.pt").exists() and (member.work_dir / "metrics.json").exists()
        for budget in member.args.budgets:
            name = f"c{budget_label(budget)}.pt"
            solo, ours = load_torch(solo_dir / name), load_torch(member.out_dir / name)
            assert solo.keys() == ours.keys()
            for key in ("params", "train_flops_per_sample", "train_frames", "config", "budget", "flops", "samples",
                        "steps", "epochs"):
                assert solo[key] == ours[key], key
            assert ours["train_loss"] == pytest.approx(solo["train_loss"], rel=1e-5)
            assert solo["model"].keys() == ours["model"].keys()
            for key, value in solo["model"].items():
                assert ours["model"][key].shape == value.shape  # its own action head
                torch.testing.assert_close(ours["model"][key], value, rtol=1e-4, atol=1e-5)
                if vectorize == "loop" and max_grad_norm is None and not torch.cuda.is_available():
                    assert torch.equal(ours["model"][key], value), key  # the same kernels in the same order
        solo_metrics, ours_metrics = read_json(solo_dir / "metrics.json"), read_json(member.out_dir / "metrics.json")
        assert ours_metrics["batched"]["vectorize"] == vectorize and len(ours_metrics["batched"]["group"]) == 3
        assert [c["train_loss"] for c in ours_metrics["checkpoints"]] == pytest.approx(
            [c["train_loss"] for c in solo_metrics["checkpoints"]], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_bf16_on_cuda(tmp_path, group):
    """The bf16 path of vmap on CUDA: each member trains to its solo run's loss within bf16's
    rounding. (Its arithmetic is checked exactly in float32 by test_batched_equals_solo; under bf16,
    grouped and single convolutions round differently, and tiny models follow other paths: an H200
    left weights 3.7e-3 apart after 30 steps.)"""
    for member, solo_dir in train_group_and_solo(tmp_path, group, "vmap"):
        for budget in member.args.budgets:
            name = f"c{budget_label(budget)}.pt"
            solo, ours = load_torch(solo_dir / name), load_torch(member.out_dir / name)
            assert ours["autocast"] == solo["autocast"] == "bf16"
            assert ours["train_loss"] == pytest.approx(solo["train_loss"], rel=5e-2)


def test_batched_resume_is_bitwise(tmp_path, group):
    straight = members(group, tmp_path / "straight")
    train_batched(straight, tmp_path / "straight" / "group", log=quiet)

    seen = []

    def stop_when_qbert_leaves(message):
        if message.startswith("checkpoint"):
            seen.append(message)
            if len(seen) == 5:  # step 21: Qbert's last budget; the stack goes on with two members
                assert "Qbert" in message
                signal.raise_signal(signal.SIGTERM)

    resumed = members(group, tmp_path / "resumed")
    with pytest.raises(SystemExit):
        train_batched(resumed, tmp_path / "resumed" / "group", log=stop_when_qbert_leaves)
    assert (tmp_path / "resumed" / "group" / "resume.pt").exists()
    assert not any(m.out_dir.exists() for m in resumed)  # nothing unfinished looks like a finished run
    train_batched(resumed, tmp_path / "resumed" / "group", log=quiet)
    for a, b in zip(straight, resumed):
        for budget in a.args.budgets:
            name = f"c{budget_label(budget)}.pt"
            x, y = load_torch(a.out_dir / name), load_torch(b.out_dir / name)
            assert x["train_loss"] == y["train_loss"] and x["samples"] == y["samples"]
            for key in x["model"]:
                assert torch.equal(x["model"][key], y["model"][key]), key


def test_group_must_share_the_architecture(tmp_path, group):
    (a, train), (b, _), _ = group
    b.width = 3
    with pytest.raises(ValueError, match="width"):
        train_batched(members([(a, train), (b, train)], tmp_path), tmp_path / "g", log=quiet)
    with pytest.raises(ValueError, match="twice"):
        train_batched(members([(a, train), (a, train)], tmp_path), tmp_path / "g", log=quiet)


def test_workflow_uses_the_group_rule_when_enabled(tmp_path):
    """The smoke study with two seeds and batched training up to width 2: one job per width up to 2
    (both seeds), train_bc for width 4; without the key, train_bc for every run."""
    from test_workflow import ROOT, snakemake

    overlay = tmp_path / "batched.yaml"
    overlay.write_text("atari:\n  bc:\n    seeds: [0, 1]\n    batched: {enabled: true, max_models: 4, max_width: 2}\n")
    counts = {}
    for name, configs in (("on", ["configs/smoke.yaml", overlay]), ("off", ["configs/smoke.yaml"])):
        run = snakemake(tmp_path, "--configfile", *[str(ROOT / c) for c in configs], "-n", "--quiet", "rules")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        counts[name] = {line.split()[0]: int(line.split()[1]) for line in run.stdout.splitlines()
                        if len(line.split()) == 2 and line.split()[1].isdigit()}
    # Breakout: 3 widths x 2 seeds, each run 3 budgets; NetHack's 3 runs (never batched) beside them.
    assert counts["on"]["train_bc"] == 2 + 3 and counts["on"]["evaluate_checkpoint"] == 18 + 9
    assert counts["on"]["train_bc_batched_w1_g0"] == counts["on"]["train_bc_batched_w2_g0"] == 1
    assert counts["off"]["train_bc"] == 3 + 3 and not any(rule.startswith("train_bc_batched") for rule in counts["off"])


def test_groups_follow_the_config():
    import yaml

    from ilscaling.config import validate_config
    from ilscaling.sweep import batched_groups

    config = validate_config(yaml.safe_load((Path(__file__).parents[1] / "configs/paper-atari.yaml").read_text()))
    groups = batched_groups(config)
    assert groups and all(run.width == g.width <= 34 for g in groups for run in g.runs)
    assert all(len(g.runs) <= 16 for g in groups)
    config["atari"]["bc"]["batched"]["enabled"] = False
    assert batched_groups(config) == []
