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
from workflow_checks import check_study_outputs, load_config

ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = ROOT / "profiles/slurm/config.yaml"
TEST_PROFILE = ROOT / "tests/cluster/profile/config.yaml"
MODE = os.environ.get("ILSCALING_SLURM_TESTS", "")


def run_snakemake(*args, limit=600):
    """Snakemake in a child process, always under `timeout -k` (a hung status loop must not hang CI)."""
    command = ["timeout", "-k", "30", str(limit), sys.executable, "-m", "snakemake", *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=limit + 60,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode not in (124, 137), f"snakemake ran past {limit} s:\n" + run.stderr[-5000:]
    return run


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


def study_profile(path, partition):
    """profiles/slurm with its placeholders filled for this cluster, plus the test profile's
    settings, written as one workflow profile (the two would not merge as separate profiles)."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = partition
    del profile["default-resources"]["slurm_account"]
    profile.update(yaml.safe_load(TEST_PROFILE.read_text()))
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile))
    return path


@pytest.mark.slurm
@pytest.mark.e2e
def test_smoke_study_through_slurm(slurm, tmp_path):
    """configs/smoke.yaml end to end, every job a Slurm job, with the user's profile template."""
    workdir = tmp_path / "work"
    profile = study_profile(tmp_path / "profile", slurm)
    config = tmp_path / "smoke.yaml"   # a snapshot: the run, the checks and the dry run see one config
    shutil.copy(ROOT / "configs/smoke.yaml", config)
    args = ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config)]
    run = run_snakemake(*args, "--workflow-profile", str(profile), limit=1500)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-8000:]

    check_study_outputs(workdir, load_config(config))

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
    # train_bc carries the preemption signal of profiles/slurm.
    assert re.search(r"slurm_extra='?--signal=USR1@300", log), "train_bc without its --signal"

    dry = run_snakemake(*args, "-n", limit=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr


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
    run = run_snakemake("--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir),
                        "--profile", str(TEST_PROFILE.parent), "--workflow-profile", "none", "--keep-going",
                        limit=600)
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


def test_slurm_profile_repeats_the_default_profile():
    """profiles/slurm replaces profiles/default (as the workflow profile), so it must carry every
    resource profiles/default sets, with the same values, and name only rules that exist."""
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    slurm = yaml.safe_load(SLURM_PROFILE.read_text())
    assert slurm["executor"] == "slurm"
    for key, value in default.get("default-resources", {}).items():
        assert slurm["default-resources"].get(key) == value, f"default-resources.{key}"
    for rule, resources in default.get("set-resources", {}).items():
        for key, value in resources.items():
            assert slurm["set-resources"].get(rule, {}).get(key) == value, f"set-resources.{rule}.{key}"
    rules = set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk")),
                           re.MULTILINE))
    assert set(slurm["set-resources"]) <= rules
    for key in set(default) - {"default-resources", "set-resources"}:
        assert slurm.get(key) == default[key], key
