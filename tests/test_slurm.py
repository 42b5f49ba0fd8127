"""The workflow through a real Slurm: the Snakemake slurm executor against a running cluster.

Opt-in (`make test-slurm`, or ILSCALING_SLURM_TESTS=1): the tests need a Slurm cluster whose
clients (sinfo, sbatch, squeue, srun) work from here, e.g. the single-node one of
`eval "$(cluster/start-slurm.sh)"`. Without one they skip; with ILSCALING_SLURM_TESTS=required
(CI) they fail instead. The profile checks at the end need no cluster and always run.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_checks import check_report, check_study_outputs, load_config

from ilscaling.families import games_of
from ilscaling.scalecheck import parse_jobs

ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = ROOT / "profiles/slurm/config.yaml"
TEST_PROFILE = ROOT / "tests/cluster/profile/config.yaml"
MODE = os.environ.get("ILSCALING_SLURM_TESTS", "")


def cluster_problem():
    """Why no Slurm cluster can be used from here, or None."""
    for tool in ("sinfo", "sbatch", "squeue", "srun"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%P %a %T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo timed out"
    if info.returncode != 0:
        return f"sinfo failed: {info.stderr.strip()[-500:]}"
    if not re.search(r"\bup\b.*\b(idle|mixed|allocated)\b", info.stdout):
        return f"no partition is up with a usable node: {info.stdout.strip()!r}"
    return None


@pytest.fixture(scope="module")
def slurm():
    """The default partition of the running cluster."""
    if not MODE:
        pytest.skip("Slurm tests are opt-in: `make test-slurm` (start a local cluster first: "
                    "eval \"$(cluster/start-slurm.sh)\")")
    problem = cluster_problem()
    if problem:
        message = f"no usable Slurm cluster ({problem}); start one: eval \"$(cluster/start-slurm.sh)\""
        if MODE == "required":
            pytest.fail(message)
        pytest.skip(message)
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    return next((p.rstrip("*") for p in partitions if p.endswith("*")), partitions[0])


def slurm_logs(workdir, rule):
    """The Slurm log of every job of `rule` (kept for all jobs by the test profile)."""
    return sorted((workdir / ".snakemake/slurm_logs" / f"rule_{rule}").rglob("*.log"))


def user_profile(home, partition):
    """profiles/slurm as a user installs it: copied to HOME/.config/snakemake/slurm, its partition
    filled in, no account (the test cluster has none), and this cluster's own settings (tests/cluster/
    profile: status through squeue, fast status checks, every Slurm log kept) added, as a user adds
    theirs. The HOME to run with (`snakemake --profile slurm` finds the profile there)."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = partition
    del profile["default-resources"]["slurm_account"]
    profile.update(yaml.safe_load(TEST_PROFILE.read_text()))
    folder = home / ".config/snakemake/slurm"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return home


def checkout(path):
    """The workflow as a user's checkout holds it (Snakefile, rules, configs, profiles): the folder
    they type `snakemake` in."""
    path.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "workflow", "configs", "profiles", "envs"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, path / name)
    return path


def as_typed(folder, home, *args, limit=600, env=None):
    """`snakemake *args` typed in `folder`, with HOME `home`; always under `timeout -k` (a hung status
    loop must not hang CI)."""
    command = ["timeout", "-k", "30", str(limit), sys.executable, "-m", "snakemake", *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=limit + 60, cwd=folder,
                         env={**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})})
    assert run.returncode not in (124, 137), f"snakemake ran past {limit} s:\n" + run.stderr[-5000:]
    return run


@pytest.mark.slurm
@pytest.mark.e2e
def test_smoke_study_through_slurm(slurm, tmp_path):
    """configs/smoke.yaml end to end, every job a Slurm job, launched as a user types it: the
    profile in ~/.config/snakemake/slurm, `snakemake --cores all --profile slurm` in the checkout."""
    home = user_profile(tmp_path / "home", slurm)
    workdir = checkout(tmp_path / "work")
    # A GPU per BC run, as the paper configs ask (the test cluster's one GPU is a fake: the runs
    # train on the CPU, one at a time), so the training jobs' sbatch calls show every option.
    command = ["--cores", "all", "--profile", "slurm", "--configfile", "configs/smoke.yaml",
               "--config", "resources={gpus: {bc: 1}}"]
    run = as_typed(workdir, home, *command, "--verbose", limit=1500)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-8000:]

    check_study_outputs(workdir, load_config(workdir / "configs/smoke.yaml"))

    # Every job went through Slurm: submitted by the slurm executor, one Slurm log per job.
    assert "SLURM run ID:" in log
    stats = re.search(r"^job\s+count\n-+\s+-+\n(.*?)^total\s+(\d+)$", log, re.MULTILINE | re.DOTALL)
    assert stats, log[:3000]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats.group(1), re.MULTILINE)}
    assert {"make_expert", "train_bc", "evaluate_checkpoint", "gather_results", "plot_game"} <= set(counts)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(set(submitted)) == sum(counts.values()) - 1, log[-5000:]   # all but the local rule `all`
    for rule, count in counts.items():
        if rule != "all":
            assert len(slurm_logs(workdir, rule)) == count, f"{rule}: {count} jobs, Slurm logs of fewer"
    logs = list((workdir / ".snakemake/slurm_logs").rglob("*.log"))
    assert sorted(path.stem for path in logs) == sorted(submitted)        # <slurm jobid>.log
    # Each ran inside a Slurm allocation (the executor's job step).
    assert all("--executor slurm-jobstep" in path.read_text() for path in logs)
    # What each job was submitted with: the profile's partition, the rule's time and memory, and
    # for the resumable training jobs the preemption signal.
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    assert len(calls) == len(submitted), log[-5000:]
    for call in calls:
        assert re.search(rf"(-p|--partition)[ =]'?{slurm}'?", call) and re.search(r" -t '?\d+", call), call
        assert re.search(r" --mem \d+", call), call
    training = [call for call in calls if re.search(r"slurm_logs/rule_(train_bc|train_forecast_agent)/", call)]
    assert training and all("--signal=USR1@300" in call and "--gpus=1" in call for call in training), training
    assert not any("--gpus" in call for call in calls if call not in training)
    assert not any("--signal" in call for call in calls if call not in training)
    print("one train_bc job's sbatch call:", training[0])

    # The report, as after a local run (test_workflow.py).
    report = as_typed(workdir, home, "--configfile", "configs/smoke.yaml", "--report", "report.html", limit=600)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    check_report(workdir / "report.html", workdir / "results/scaling/fits.nc",
                 games_of(load_config(workdir / "configs/smoke.yaml")))

    dry = as_typed(workdir, home, *command, "-n", limit=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.parametrize("way", ["path", "home", "environment"])
def test_every_way_to_name_the_profile_keeps_the_cluster_settings(tmp_path, way):
    """`--profile profiles/slurm`, `--profile slurm` (a copy in ~/.config/snakemake) and
    SNAKEMAKE_PROFILE=slurm all give every submitted job the profile's partition and account and
    the training jobs the preemption signal, beside the rules' own runtime, memory and GPUs (a dry
    run lists what each job would be submitted with; no cluster needed)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = checkout(tmp_path / "work")
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(slurm_partition="gpu-a", slurm_account="lab-b")
    (workdir / "profiles/slurm/config.yaml").write_text(yaml.safe_dump(profile))
    home = tmp_path / "home"
    shutil.copytree(workdir / "profiles/slurm", home / ".config/snakemake/slurm")
    args, env = {"path": (["--profile", "profiles/slurm"], {}), "home": (["--profile", "slurm"], {}),
                 "environment": ([], {"SNAKEMAKE_PROFILE": "slurm"})}[way]
    run = as_typed(workdir, home, "--cores", "all", *args, "--configfile", "configs/smoke.yaml", "-n", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = [(rule, resources) for rule, resources in parse_jobs(run.stdout) if rule not in ("all", "published")]
    assert {rule for rule, _ in jobs} >= {"make_expert", "train_bc", "evaluate_checkpoint", "fit_scaling_laws"}
    for rule, resources in jobs:
        assert (resources.get("slurm_partition"), resources.get("slurm_account")) == ("gpu-a", "lab-b"), rule
        assert {"runtime", "mem_mb", "gpu"} <= set(resources), rule
        preemptible = rule in ("train_bc", "train_forecast_agent")
        assert (resources.get("slurm_extra") == "--signal=USR1@300") == preemptible, (rule, resources)


RETRY_SNAKEFILE = r'''
rule all:
    input: "flaky.txt", "preempted.txt", "gpu.txt", "broken.txt"

# Fails on its first attempt, succeeds on the second.
rule flaky:
    output: "flaky.txt"
    resources: mem_mb=100, runtime=5, try_number=lambda wc, attempt: attempt
    shell: "echo attempt {resources.try_number} >> flaky.attempts; test {resources.try_number} -ge 2; touch {output}"

# Like a BC run at its time limit: Slurm sends SIGUSR1 (slurm_extra, as in profiles/slurm) 150 s
# before the 4-minute limit (Slurm may send it up to 60 s early: not before 30 s, when the command
# has long installed its handler); the job saves a resume file and exits 1; the retry resumes.
rule preempted:
    output: "preempted.txt"
    resources: mem_mb=100, runtime=4, slurm_extra="'--signal=USR1@150'"
    shell:
        """
        if [ -f preempted.resume ]; then cp preempted.resume {output}; exit 0; fi
        python3 -c '
import signal, sys, time
def stop(signum, frame):
    open("preempted.resume", "w").write("resumed after signal %d\\n" % signum)
    sys.exit(1)
signal.signal(signal.SIGUSR1, stop)
signal.signal(signal.SIGTERM, stop)
time.sleep(200)
sys.exit(2)'
        """

# Scheduled on the (fake) GPU GRES of the test cluster: --gpus=1.
rule gpu:
    output: "gpu.txt"
    resources: mem_mb=100, runtime=5, gpu=1
    shell: "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES > {output}"

# Always fails: reported as failed after every attempt.
rule broken:
    output: "broken.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo broken >&2; exit 3"
'''


@pytest.fixture(scope="module")
def retry_run(slurm, tmp_path_factory):
    """One Snakemake run (test profile: retries 1) of RETRY_SNAKEFILE; the tests below read it."""
    workdir = tmp_path_factory.mktemp("retry")
    (workdir / "Snakefile").write_text(RETRY_SNAKEFILE)
    home = user_profile(tmp_path_factory.mktemp("home"), slurm)
    run = as_typed(workdir, home, "--cores", "all", "--profile", "slurm", "--keep-going", "--verbose", limit=600)
    return workdir, run, run.stdout + run.stderr


@pytest.mark.slurm
def test_failed_job_is_retried_and_succeeds(retry_run):
    workdir, run, log = retry_run
    assert (workdir / "flaky.txt").is_file(), log[-5000:]
    assert (workdir / "flaky.attempts").read_text().split() == ["attempt", "1", "attempt", "2"]
    assert len(slurm_logs(workdir, "flaky")) == 2   # two Slurm jobs
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", log), log[-5000:]


@pytest.mark.slurm
def test_failing_job_fails_the_run_after_its_retries(retry_run):
    workdir, run, log = retry_run
    assert run.returncode != 0
    assert not (workdir / "broken.txt").exists()
    logs = slurm_logs(workdir, "broken")
    assert len(logs) == 2, logs   # the attempt and one retry (test profile: retries: 1)
    assert all("exited with non-zero exit code" in path.read_text() for path in logs)
    assert "Error in rule broken" in log


@pytest.mark.slurm
def test_preemption_signal_reaches_the_job_and_retry_resumes(retry_run):
    workdir, run, log = retry_run
    assert (workdir / "preempted.txt").read_text() == "resumed after signal 10\n", log[-5000:]   # SIGUSR1
    assert len(slurm_logs(workdir, "preempted")) == 2


@pytest.mark.slurm
def test_gpu_job_runs_on_the_gpu_gres(retry_run):
    workdir, run, log = retry_run
    assert (workdir / "gpu.txt").read_text().strip() == "CUDA_VISIBLE_DEVICES=0", log[-5000:]


def test_the_profiles_hold_no_resources_of_the_workflow():
    """profiles/slurm is a plain profile of cluster specifics, and the auto-loaded workflow profile
    sets no resources a user profile's would lose to: every rule declares its own."""
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert not {"default-resources", "set-resources"} & set(default)
    slurm = yaml.safe_load(SLURM_PROFILE.read_text())
    assert slurm["executor"] == "slurm" and "set-resources" not in slurm
    assert set(slurm["default-resources"]) == {"slurm_partition", "slurm_account"}
