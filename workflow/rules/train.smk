# One BC run per (game, width, seed), checkpointed at each of its FLOP budgets.
# An unfinished run lives in its work folder (resume state and checkpoints), outside the output
# folder that Snakemake clears when a job fails; a rerun resumes from it.


rule train_bc:
    input:
        data="results/{game}/data",
    output:
        run=directory("results/{game}/runs/w{width}-s{seed}"),
    log:
        "logs/{game}/train_bc/w{width}-s{seed}.log",
    benchmark:
        "results/benchmarks/{game}/train_bc/w{width}-s{seed}.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.training_threads(config, wc.game)
    resources:
        runtime=requested(bc_request, "runtime"),
        mem_mb=requested(bc_request, "mem_mb"),
        gpu=requested(bc_request, "gpu"),
        slurm_extra=job_resources.PREEMPTION_SIGNAL,
    params:
        job=lambda wc: jobs.training(
            config, wc.game, int(wc.width), int(wc.seed), run_of(wc, wc.game).budgets
        ),
        train=lambda wc: data_file(wc.game, "train"),
        work_dir="results/{game}/unfinished/w{width}-s{seed}",
    shell:
        "ilscaling train-bc --spec {params.job[0]:q} --speed {params.job[1]:q} --num-threads {threads} "
        "--train {params.train} --out-dir {output.run} --work-dir {params.work_dir} > {log} 2>&1"


# atari.bc.batched: one job per group of runs of one width (common.smk: BATCHED_GROUPS), trained
# in one process (train_batched.py). It writes each run's folder as train_bc would and takes
# precedence over train_bc for those runs, so everything downstream is unchanged.
for group in BATCHED_GROUPS:

    rule:
        name:
            f"train_bc_batched_{group.name.replace('-', '_')}"
        input:
            data=sorted({f"results/{run.game}/data" for run in group.runs}),
        output:
            runs=[
                directory(f"results/{run.game}/runs/{run.name}") for run in group.runs
            ],
        log:
            f"logs/batched/train_bc/{group.name}.log",
        benchmark:
            f"results/benchmarks/batched/train_bc/{group.name}.tsv"
        conda:
            CONDA_ENV
        threads: jobs.training_threads(config, group.runs[0].game)
        resources:
            **batched_resources(group),
        params:
            job=batched_job(group),
            work_dir=f"results/batched/unfinished/{group.name}",
        shell:
            "ilscaling train-bc-batched --spec {params.job[0]:q} --speed {params.job[1]:q} "
            "--members {params.job[2]:q} --num-threads {threads} --work-dir {params.work_dir} > {log} 2>&1"

    workflow.ruleorder(f"train_bc_batched_{group.name.replace('-', '_')}", "train_bc")
