"""End to end: the real Snakemake workflow on configs/smoke.yaml in a temporary folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from golden import GOLDEN, differences, machine, study_values
from sweeps import synthetic_results
from workflow_checks import check_report, check_study_outputs, load_config, report_parts

from ilscaling.families import games_of
from ilscaling.frontpage import write_laws_rst
from ilscaling.plots import plot_all
from ilscaling.fit import FitConfig, write_fits

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """The smoke study, run once from nothing by the real workflow."""
    folder = tmp_path_factory.mktemp("smoke")
    run = snakemake(folder, "--configfile", str(ROOT / "configs/smoke.yaml"), "--cores", "2")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    return folder


@pytest.mark.e2e
def test_smoke_study_matches_its_golden_values(smoke_study):
    """Every value of results.nc and fits.nc is the golden one (tests/golden.py): to the digit,
    on the machine that made them."""
    golden = json.loads(GOLDEN.read_text())
    if golden["machine"] != machine():
        pytest.skip(f"the golden values were made on {golden['machine']}; this machine is {machine()}, whose "
                    "kernels round otherwise (rewrite them here with `python tests/golden.py <smoke study>`)")
    moved = differences(golden, study_values(smoke_study))
    assert not moved, ("the smoke study's numbers moved (if meant, rewrite tests/golden/smoke.json: "
                       "python tests/golden.py <smoke study>):\n" + "\n".join(moved))


@pytest.mark.e2e
def test_smoke_study_end_to_end(smoke_study):
    check_study_outputs(smoke_study, load_config(ROOT / "configs/smoke.yaml"))

    # A finished study is up to date: nothing left to run.
    dry = snakemake(smoke_study, "--configfile", str(ROOT / "configs/smoke.yaml"), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    check_speed_settings_rerun_nothing(smoke_study)
    report = snakemake(smoke_study, "--configfile", str(ROOT / "configs/smoke.yaml"), "--report", "report.html")
    assert report.returncode == 0 and (smoke_study / "report.html").stat().st_size > 10**6, report.stderr[-3000:]
    assert "summary.md" in (smoke_study / "report.html").read_text(errors="replace")
    check_report(smoke_study / "report.html", smoke_study / "results/scaling/fits.nc", games_of(load_config(ROOT / "configs/smoke.yaml")))
    assert "No forecast verdicts yet" not in report_parts(smoke_study / "report.html")[0]


# Settings that change how fast jobs run (or what they keep), never what they compute.
SPEED_SETTINGS = [
    "atari={bc: {threads: 2, resume_every_s: 30, device: cpu, compile: true, channels_last: false, "
    "batched: {max_models: 2, vectorize: loop}}, evaluation: {threads: 2, device: cpu}, expert: {threads: 2}}",
    "nethack={bc: {threads: 2, resume_every_s: 30, device: cpu}, bot: {processes: 1}, "
    "evaluation: {threads: 2, processes: 2, envs: 1, device: cpu, keep_ttyrecs: true}}",
]


def check_speed_settings_rerun_nothing(workdir):
    """On a finished smoke study: a speed setting plans nothing; a new seed plans only its own runs,
    their evaluations and what gathers them; a result setting (the learning rate) reruns its runs."""
    smoke = str(ROOT / "configs/smoke.yaml")
    for setting in SPEED_SETTINGS:
        dry = snakemake(workdir, "--configfile", smoke, "-n", "--config", setting)
        assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, (setting, dry.stdout[-3000:])
    seeds = snakemake(workdir, "--configfile", smoke, "-n", "-p", "--config", "atari={bc: {seeds: [0, 1]}}")
    trained = [line for line in seeds.stdout.splitlines() if " train-bc " in line]
    assert len(trained) == 3 and all('"seed": 1' in line for line in trained), seeds.stdout[-3000:]
    lr = snakemake(workdir, "--configfile", smoke, "-n", "-p", "--config", "nethack={bc: {lr: 0.002}}")
    retrained = [line for line in lr.stdout.splitlines() if " train-bc " in line]
    assert retrained and all('"game": "NetHack"' in line for line in retrained), lr.stdout[-3000:]
    # max_epochs guards the sweep's runs, but sets the forecast agent's width (within the data):
    # the forecast reruns, the sweep does not.
    guard = snakemake(workdir, "--configfile", smoke, "-n", "--quiet", "rules", "--config", "atari={bc: {max_epochs: 200}}")
    assert "forecast_agent" in guard.stdout and "train_bc " not in guard.stdout, guard.stdout[-3000:]
    # Batching moves runs to another job, which Snakemake reruns; by modification times alone
    # (the README's way to switch a finished study over), nothing is to be done.
    batched = ["--config", "atari={bc: {batched: {enabled: true, max_models: 4, max_width: 2}}}"]
    moved = snakemake(workdir, "--configfile", smoke, "-n", "--quiet", "rules", *batched)
    assert "train_bc_batched_w1_g0" in moved.stdout, moved.stdout[-3000:]
    kept = snakemake(workdir, "--configfile", smoke, "-n", *batched, "--rerun-triggers", "mtime")
    assert kept.returncode == 0 and "Nothing to be done" in kept.stdout + kept.stderr, kept.stdout[-3000:]


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/smoke.yaml").read_text().replace("games: [Breakout]", "games: [Breakout]\n  gmaes: []"))
    run = snakemake(tmp_path, "--configfile", str(bad), "--cores", "1")
    assert run.returncode != 0
    assert "atari.gmaes" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def test_paper_dag_builds(tmp_path):
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/paper-atari.yaml"), "-n", "--quiet", "rules")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "train_bc" in run.stdout + run.stderr


def test_paper_nethack_dag_builds_on_the_nld_aa_layout(tmp_path):
    """The paper's NetHack config with a dataset path: no code change, only the path."""
    (tmp_path / "nle_data").mkdir()
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/paper-nethack.yaml"), "-n", "--quiet", "rules",
                    "--config", f"nethack={{dataset: {{path: {tmp_path / 'nle_data'}}}}}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "train_bc" in run.stdout + run.stderr and "make_expert" not in run.stdout + run.stderr
    # Without the data here: a dry run plans the study and says what is missing; a run stops before any job.
    message = "config key nethack.dataset.path: /path/to/nld-aa/nle_data is not a folder here"
    planned = snakemake(tmp_path, "--configfile", str(ROOT / "configs/paper-nethack.yaml"), "-n", "--quiet", "rules")
    assert planned.returncode == 0 and "make_dataset" in planned.stdout, planned.stderr[-3000:]
    assert message in planned.stderr
    missing = snakemake(tmp_path, "--configfile", str(ROOT / "configs/paper-nethack.yaml"), "--cores", "1")
    assert missing.returncode != 0 and message in missing.stdout + missing.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_a_retried_job_keeps_the_log_of_each_failed_attempt(tmp_path):
    """Snakemake deletes a job's log before retrying it: the CLI keeps a failed attempt's log."""
    (tmp_path / "Snakefile").write_text(f'''
rule evaluate:
    output: "eval.json"
    log: "logs/evaluate.log"
    shell: "{sys.executable} -m ilscaling evaluate --spec '{{{{}}}}' --checkpoint missing.pt --heldout x --out {{output}} > {{log}} 2>&1"
''')
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "--directory",
                          str(tmp_path), "--cores", "1", "--retries", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    kept = sorted(p.name for p in (tmp_path / "logs").glob("evaluate.log.failed-*"))
    assert kept == ["evaluate.log.failed-1", "evaluate.log.failed-2"], run.stdout[-3000:] + run.stderr[-3000:]
    for name in kept:
        assert "BC checkpoint missing.pt does not exist" in (tmp_path / "logs" / name).read_text()


def training_workflow(folder, shell, budget, resources=""):
    """A one-rule Snakefile in `folder` training a tiny BC run (train-bc with `shell` around it) on
    synthetic demonstrations; the Snakemake command that runs it."""
    from conftest import synthetic_demonstrations

    synthetic_demonstrations().save(folder / "train.npz")
    # The spec as the workflow writes it (Snakemake's shell turns {{ into {), its budget BUDGET
    # left to `shell` (a shell word between the single quotes).
    spec = ("""--spec '{{"game": "Breakout", "width": 1, "num_actions": 4, "batch_size": 8, "budgets": ['BUDGET']}}' """
            """--speed '{{"log_every": 20}}'""")
    train = f"{sys.executable} -m ilscaling train-bc {spec} --train {{input}} --out-dir {{output}}"
    (folder / "Snakefile").write_text(f'''
rule train:
    input: "train.npz"
    output: directory("run")
    log: "logs/train.log"
    {resources}
    shell: {shell.replace("TRAIN", train.replace("BUDGET", budget))!r}
''')
    return [sys.executable, "-m", "snakemake", "--snakefile", str(folder / "Snakefile"), "--directory", str(folder),
            "--cores", "1"]


def test_a_killed_attempt_keeps_its_log(tmp_path):
    """A trainer killed outright (SIGKILL: no handler runs) keeps what it logged: the attempt's log
    is hard-linked at its start, and Snakemake's deleting the log before the retry leaves the link."""
    command = training_workflow(
        tmp_path, "if [ {resources.tries} = 1 ]; then kill='timeout -s KILL 20' budget=1e15; else kill='' budget=1e8; "
        "fi; $kill TRAIN --work-dir work{resources.tries} > {log} 2>&1", budget="$budget",
        resources="resources: tries=lambda wildcards, attempt: attempt")
    run = subprocess.run([*command, "--retries", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["train.log", "train.log.failed-1"]
    killed = (logs / "train.log.failed-1").read_text()
    assert "1e15" in killed and "step 20:" in killed  # the killed attempt's own lines, up to its end
    assert "1e8" in (logs / "train.log").read_text() and "1e15" not in (logs / "train.log").read_text()


def test_snakemake_interrupted_while_a_run_finishes_restores_it_on_the_next_run(tmp_path):
    """SIGINT to Snakemake alone: the trainer finishes, Snakemake marks its folder incomplete. The
    next plain run (profiles/default: rerun-incomplete) restores the run from its work folder."""
    import signal
    import time

    command = [*training_workflow(tmp_path, "TRAIN --work-dir work > {log} 2>&1", budget="1e10"),
               "--workflow-profile", str(ROOT / "profiles/default")]
    # Snakemake alone gets the signal (its own session), and it reacts to it even where the tests
    # run in the background, whose processes start with SIGINT ignored.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = tmp_path / "logs/train.log"
    while not (log.exists() and "step 20:" in log.read_text()):
        assert first.poll() is None, first.stdout.read()[-3000:]
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) != 0
    assert (tmp_path / "run/metrics.json").exists()  # the job finished after Snakemake was told to stop
    bare = subprocess.run([*command[:-1], "none", "-n"], capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0 and "Incomplete files" in bare.stdout + bare.stderr  # Snakemake's own default
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    restored = log.read_text()
    assert "holds this run, finished" in restored and "step 20:" not in restored


def test_the_report_of_an_unfinished_study_shows_what_is_done(tmp_path):
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/smoke.yaml"), "--report", "report.html")
    assert run.returncode == 0 and (tmp_path / "report.html").is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    front, categories = report_parts(tmp_path / "report.html")
    assert "Breakout" in front and "FLOP budgets 1e9, 3e9, 1e10" in front and "No laws yet" in front
    assert categories == {}


def test_the_report_opens_on_the_front_page_and_the_laws_at_a_glance(tmp_path):
    """A study whose fits, figures and table of laws are made (the workflow's own code, on synthetic
    sweeps of the smoke games, in place of training): the front page shows the fitted exponents and
    the laws at a glance come first among the results."""
    games = games_of(load_config(ROOT / "configs/smoke.yaml"))
    scaling = tmp_path / "results" / "scaling"
    scaling.mkdir(parents=True)
    synthetic_results(games=tuple(games), budgets=(1e15, 1e16, 1e17, 1e18), noise=0.01).to_netcdf(scaling / "results.nc")
    write_fits(scaling / "results.nc", scaling / "fits.nc", scaling / "summary.md", FitConfig(bootstrap=50))
    plot_all(scaling / "results.nc", scaling / "fits.nc", tmp_path / "results" / "figures")
    write_laws_rst(scaling / "fits.nc", tmp_path / "results" / "report" / "headline_laws.rst")
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/smoke.yaml"), "--report", "report.html")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check_report(tmp_path / "report.html", scaling / "fits.nc", games)
    assert "No forecast verdicts yet" in report_parts(tmp_path / "report.html")[0]
