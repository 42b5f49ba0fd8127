"""Per-job resources (runtime, mem_mb, gpu) that grow with the job and the attempt, and the scale check."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from ilscaling import job_resources
from ilscaling.config import validate_config
from ilscaling.sweep import sweep_runs
from ilscaling.scalecheck import dry_run, parse_jobs, report, totals, training_flops

ROOT = Path(__file__).resolve().parents[1]
ESTIMATED_RULES = ("make_expert", "make_dataset", "train_bc", "train_forecast_agent", "evaluate_checkpoint",
                   "evaluate_forecast_agent")
SIZED_RULES = ESTIMATED_RULES   # runtime and mem_mb estimated


def load(name, **resources):
    config = yaml.safe_load((ROOT / name).read_text())
    if resources:
        config["resources"] = resources
    return validate_config(config)


@pytest.fixture(scope="module")
def paper():
    return load("configs/paper-atari.yaml")


@pytest.fixture(scope="module")
def paper_nethack():
    return load("configs/paper-nethack.yaml")


def test_training_request_grows_with_model_and_budget(paper):
    small = job_resources.training(paper, "Qbert", 1, 1e13)
    wide = job_resources.training(paper, "Qbert", 266, 1e13)
    long = job_resources.training(paper, "Qbert", 266, 1e18)
    assert small.gpu == wide.gpu == 1                             # paper-atari: one GPU per BC run
    assert wide.runtime == paper["resources"]["min_runtime"]      # 1e13 FLOPs of a large model: the floor
    assert small.runtime < 15                                     # 15M samples of w=1 at 50k/s, twice over
    assert long.runtime > 20 * small.runtime
    # At 1e18 FLOPs a w=266 run is FLOP-bound: 1e18 / 1e14 FLOP/s, twice over (safety factor 2).
    assert long.runtime == pytest.approx(2 * 1e18 / 1e14 / 60, abs=1)
    assert wide.mem_mb > small.mem_mb                              # weights, gradients, Adam moments
    assert wide.mem_mb - small.mem_mb == pytest.approx(32 * (5_037_248 - 923) / 2**20, abs=2)


def test_small_models_are_bound_by_samples_per_second(paper):
    """A tiny model cannot use the GPU's FLOP/s: its time is samples / train_samples_per_s."""
    seconds = job_resources.training_seconds(paper, "Qbert", 1, 1e16)
    _, flops_per_sample = job_resources.model_size(paper, "Qbert", 1)
    rate = paper["resources"]["throughput"]["gpu"]["train_samples_per_s"]
    assert seconds == pytest.approx(1e16 / flops_per_sample / rate)
    assert seconds > 1e16 / paper["resources"]["throughput"]["gpu"]["train_flops_per_s"]


def test_scaled_nethack_estimates_follow_the_models_flops():
    """With encoders that grow with h (variant scaled) a budget buys the small widths many more
    samples: they are bound by samples/s, the large ones by FLOP/s, and the grid follows the prior."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    del config["atari"], config["forecast"]["games"]
    config["nethack"]["model"]["variant"] = "scaled"
    config["nethack"]["sweep"]["widths"] = [16, 32, 64, 128, 256, 512]
    del config["nethack"]["sweep"]["grid"]
    config["nethack"]["bc"]["max_epochs"] = 1e6  # the prior alone places the grid here (no data bound)
    config = validate_config(config)
    cpu = config["resources"]["throughput"]["cpu"]
    sizes = {w: job_resources.model_size(config, "NetHack", w) for w in (16, 512)}
    assert sizes[512][1] / sizes[16][1] > 0.5 * sizes[512][0] / sizes[16][0]
    small, large = (job_resources.training_seconds(config, "NetHack", w, 1e12) for w in (16, 512))
    assert small == pytest.approx(1e12 / sizes[16][1] / cpu["train_samples_per_s"])
    assert large == pytest.approx(1e12 / cpu["train_flops_per_s"])
    assert small > 10 * large
    grid = sweep_runs(config, "NetHack")
    widths = sorted({run.width for run in grid})
    assert widths[0] == 16 and 512 not in widths  # the prior's optimum at 5e12 FLOPs is near h = 48


def test_requests_grow_with_the_attempt(paper, paper_nethack):
    for first, second, third in [
        [job_resources.training(paper, "Qbert", 34, 1e16, attempt=a) for a in (1, 2, 3)],
        [job_resources.evaluation(paper_nethack, "NetHack", 512, attempt=a) for a in (1, 2, 3)],
        [job_resources.expert(paper, attempt=a) for a in (1, 2, 3)],
    ]:
        assert second.runtime == 2 * first.runtime and third.runtime == 3 * first.runtime
        assert first.mem_mb < second.mem_mb < third.mem_mb
        assert second.mem_mb == pytest.approx(1.5 * first.mem_mb, abs=1)
        assert first.gpu == second.gpu == third.gpu


def test_max_runtime_caps_one_attempt(paper):
    capped = copy.deepcopy(paper)
    capped["resources"]["max_runtime"] = 240
    assert job_resources.training(paper, "Qbert", 266, 1e18).runtime > 240
    assert job_resources.training(capped, "Qbert", 266, 1e18).runtime == 240
    assert job_resources.training(capped, "Qbert", 266, 1e18, attempt=3).runtime == 240


def test_evaluation_request_grows_with_games_and_model(paper_nethack):
    few = job_resources.evaluation(paper_nethack, "NetHack", 32, episodes=100)
    many = job_resources.evaluation(paper_nethack, "NetHack", 32, episodes=1000)
    assert many.runtime > 5 * few.runtime and many.gpu == 1
    # On the CPU the policy's forward pass, not the env, bounds a large model's rollouts.
    cpu = copy.deepcopy(paper_nethack)
    cpu["resources"]["gpus"]["evaluation"] = 0
    assert (job_resources.evaluation(cpu, "NetHack", 2048).runtime
            > 2 * job_resources.evaluation(cpu, "NetHack", 32).runtime)
    assert job_resources.evaluation(cpu, "NetHack", 2048).gpu == 0
    assert job_resources.evaluation(cpu, "NetHack", 2048).mem_mb > job_resources.evaluation(cpu, "NetHack", 32).mem_mb


def test_small_models_evaluate_without_a_gpu_below_the_threshold(paper):
    game = paper["atari"]["games"][0]
    widths = sorted(paper["atari"]["sweep"]["widths"])
    small, large = widths[0], widths[-1]
    every = copy.deepcopy(paper)
    every["resources"]["evaluation_gpu_min_params"] = 0                # the schema's default
    config = copy.deepcopy(paper)
    config["resources"]["evaluation_gpu_min_params"] = job_resources.model_size(paper, game, large)[0]
    assert job_resources.evaluation(every, game, small).gpu == 1     # every evaluation gets a GPU
    assert job_resources.evaluation(config, game, large).gpu == 1    # at the threshold: a GPU
    assert job_resources.evaluation(config, game, large) == job_resources.evaluation(every, game, large)
    # Below it: no GPU, and estimated as on a CPU-only study.
    cpu = copy.deepcopy(every)
    cpu["resources"]["gpus"]["evaluation"] = 0
    assert job_resources.evaluation(config, game, small) == job_resources.evaluation(cpu, game, small)
    assert job_resources.evaluation(config, game, small).gpu == 0


def test_cpu_study_asks_for_no_gpu_and_the_floor():
    """The default study: CPU jobs of minutes, each asking for the 10-minute floor and no GPU."""
    config = load("config.yaml")
    for game in ("Qbert", "NetHack"):
        for run in sweep_runs(config, game):
            request = job_resources.training(config, game, run.width, max(run.budgets))
            assert request.gpu == 0 and request.runtime >= 10
    assert job_resources.expert(config).runtime > job_resources.demonstrations(config).runtime


def test_nethack_dataset_request(paper_nethack):
    """NLD's size is unknown before indexing: a day; the bot's few games: the floor. Never a GPU."""
    assert job_resources.nethack_dataset(paper_nethack) == job_resources.Request(runtime=24 * 60, mem_mb=2000, gpu=0)
    assert job_resources.nethack_dataset(paper_nethack, attempt=2).runtime == 48 * 60
    assert job_resources.nethack_dataset(load("config.yaml")).runtime == 10


def test_forecast_width_before_the_plan_is_the_priors_optimum(paper):
    """Before forecast.json exists the forecast run is sized at the width the sweep's prior expects:
    a larger budget expects a wider (or as wide) model."""
    widths = [job_resources.expected_width(paper, "Qbert", c) for c in (1e13, 1e15, 1e17, 1e19)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert set(widths) <= set(paper["atari"]["sweep"]["widths"])


def test_profiles_leave_the_estimates_alone():
    """set-resources wins over a rule's own resources: a profile setting runtime, mem_mb or gpu for
    an estimated rule would silently replace the estimate."""
    for name in ("profiles/default/config.yaml", "profiles/slurm/config.yaml"):
        profile = yaml.safe_load((ROOT / name).read_text())
        for rule, resources in (profile.get("set-resources") or {}).items():
            if rule in SIZED_RULES:
                assert not {"runtime", "mem_mb", "gpu"} & set(resources), f"{name}: set-resources.{rule}"


SNIPPET = """
[Mon Nov 30 10:00:00 2026]
rule train_bc:
    input: results/Breakout/data
    output: results/Breakout/runs/w1-s0
    wildcards: game=Breakout, width=1, seed=0
    resources: tmpdir=<TBD>, mem_mb=1021, mem=1.02 GB, slurm_extra='--signal=USR1@300 --mail-type=END,FAIL', runtime=90, gpu=1

rule evaluate_checkpoint:
    resources: tmpdir=<TBD>, disk_mb=<TBD>, mem_mb=2006, runtime=30, gpu=0

rule train_bc:
    resources: mem_mb=3000, runtime=600, gpu=2

rule train_bc_batched_w4_g0:
    resources: mem_mb=3000, runtime=60, gpu=1

rule train_bc_batched_w8_g1:
    resources: mem_mb=3000, runtime=120, gpu=1

localrule all:
    input: results/scaling/results.nc
    resources: tmpdir=/tmp, mem_mb=2000, runtime=60
Job stats:
job                    count
-------------------  -------
all                        1
evaluate_checkpoint        1
train_bc                   2
train_bc_batched_w4_g0     1
train_bc_batched_w8_g1     1
total                      6
"""


def test_parse_and_sum_a_dry_run():
    jobs = parse_jobs(SNIPPET)
    assert [rule for rule, _ in jobs] == ["train_bc", "evaluate_checkpoint", "train_bc", "train_bc_batched_w4_g0",
                                          "train_bc_batched_w8_g1", "all"]
    assert jobs[0][1]["slurm_extra"] == "'--signal=USR1@300 --mail-type=END,FAIL'"
    assert jobs[0][1]["mem"] == "1.02 GB" and jobs[0][1]["runtime"] == "90"
    assert jobs[-1][1] == {}                                      # local: never submitted, no hours
    per_rule = totals(jobs)
    assert per_rule["train_bc"].jobs == 2
    assert per_rule["train_bc"].gpu_hours == pytest.approx(1 * 90 / 60 + 2 * 600 / 60)
    assert per_rule["train_bc"].max_runtime == 600 and per_rule["train_bc"].max_mem_mb == 3000
    assert per_rule["evaluate_checkpoint"].gpu_hours == 0
    assert per_rule["evaluate_checkpoint"].job_hours == pytest.approx(0.5)
    assert per_rule["all"].job_hours == 0
    assert per_rule["train_bc_batched_*"].jobs == 2 and per_rule["train_bc_batched_*"].gpu_hours == pytest.approx(3)


@pytest.fixture(scope="module")
def smoke_dry_run(tmp_path_factory):
    """configs/smoke.yaml dry-run under profiles/slurm, once."""
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    config["resources"] = {"gpus": {"bc": 1, "evaluation": 0}}   # a GPU per BC run, to see it summed
    path = tmp_path_factory.mktemp("smoke") / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    text, seconds = dry_run(path, path.parent / "work", str(ROOT / "profiles/slurm"), [])
    return validate_config(config), text, seconds


def test_rules_request_the_estimates(smoke_dry_run):
    """Each estimated rule's jobs carry runtime, mem_mb and gpu, as ilscaling.job_resources computes them."""
    config, text, _ = smoke_dry_run
    jobs = parse_jobs(text)
    rules = {rule for rule, _ in jobs}
    assert set(ESTIMATED_RULES) <= rules
    for rule, resources in jobs:
        if rule in ESTIMATED_RULES:
            assert {"runtime", "mem_mb", "gpu"} <= set(resources), rule
            assert resources["gpu"] == ("1" if rule in ("train_bc", "train_forecast_agent") else "0")
    # The train_bc job of Breakout w4 asks for exactly the estimate of its run.
    block = re.search(r"^rule train_bc:\n(?:    .*\n)*?    wildcards: game=Breakout, width=4, seed=0\n"
                      r"    resources: (.*)$", text, re.MULTILINE)
    assert block, text[:3000]
    resources = dict(parse_jobs("rule train_bc:\n    resources: " + block.group(1))[0][1])
    run = next(r for r in sweep_runs(config, "Breakout") if r.width == 4)
    expected = job_resources.training(config, "Breakout", 4, max(run.budgets))
    assert (int(resources["runtime"]), int(resources["mem_mb"]), int(resources["gpu"])) == (
        expected.runtime, expected.mem_mb, expected.gpu)


def test_scale_check_report_of_the_smoke_study(smoke_dry_run):
    config, text, seconds = smoke_dry_run
    assert seconds < 30
    out = report("smoke.yaml", text, seconds, config)
    per_rule = totals(parse_jobs(text))
    assert per_rule["train_bc"].jobs == 3 + 3 and per_rule["evaluate_checkpoint"].jobs == 9 + 9  # Breakout, NetHack
    assert per_rule["train_bc"].gpu_hours == pytest.approx(6 * 10 / 60)   # 6 runs at the 10-minute floor, 1 GPU
    total_gpu = sum(entry.gpu_hours for entry in per_rule.values())
    assert total_gpu == pytest.approx(sum(e.gpu_hours for r, e in per_rule.items() if r.startswith("train_")))
    assert re.search(rf"^total\s+{len(parse_jobs(text))}\s+[\d.,]+\s+{total_gpu:,.1f}$", out, re.MULTILINE), out
    assert f"DAG of {len(parse_jobs(text))} jobs" in out
    flops = training_flops(config)
    assert flops["Breakout"] == pytest.approx(3 * 1e10 + 2e10)   # three runs to 1e10, the forecast at 2x
    assert f"{sum(flops.values()):.3g}" in out


def test_scale_check_reads_config_overrides_given_to_snakemake():
    from ilscaling.scalecheck import config_overrides

    extra = ["--rerun-triggers", "mtime", "--config", "seeds=2", "published={path: x}", "-p", "--cores", "2"]
    assert config_overrides(extra) == {"seeds": 2, "published": {"path": "x"}}   # as Snakemake parses them
    assert config_overrides(["--cores", "2"]) == {}
    with pytest.raises(SystemExit, match="name=value"):
        config_overrides(["--config", "forecast"])
