# One BC run per (game, width, seed), checkpointed at each of its FLOP budgets.
# An unfinished run lives in its work folder (resume state and checkpoints), outside the output
# folder that Snakemake clears when a job fails; a rerun resumes from it.


rule train_bc:
    input:
        train=GAME_DIR + "/demos/train.npz",
    output:
        run=directory(GAME_DIR + "/runs/w{width}-s{seed}"),
    log:
        "logs/{game}/train_bc/w{width}-s{seed}.log",
    benchmark:
        RES + "/benchmarks/{game}/train_bc/w{width}-s{seed}.tsv"
    params:
        budgets=lambda wc: " ".join(budget_label(b) for b in run_of(wc, wc.game).budgets),
        num_actions=lambda wc: num_actions(wc.game),
        lr=ATARI["bc"]["lr"] if ATARI else None,
        batch_size=ATARI["bc"]["batch_size"] if ATARI else None,
        clip=grad_clip_flag(ATARI["bc"]) if ATARI else "",
        speed=lambda wc: training_speed(ATARI),
        work_dir=RES + "/atari/{game}/unfinished/w{width}-s{seed}",
    threads: ATARI["bc"]["threads"] if ATARI else 1
    resources:
        runtime=requested(bc_request, "runtime"),
        mem_mb=requested(bc_request, "mem_mb"),
        gpu=requested(bc_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-bc --game {wildcards.game} --width {wildcards.width} --seed {wildcards.seed} "
        "--budgets {params.budgets} --num-actions {params.num_actions} --lr {params.lr} "
        "--batch-size {params.batch_size} {params.clip} --num-threads {threads} {params.speed} "
        "--train {input.train} --out-dir {output.run} --work-dir {params.work_dir} > {log} 2>&1"


# atari.bc.batched: one job per group of runs of one width (common.smk: BATCHED_GROUPS), trained
# in one process (train_batched.py). It writes each run's folder as train_bc would and takes
# precedence over train_bc for those runs, so everything downstream is unchanged.
for group in BATCHED_GROUPS:

    rule:
        name:
            f"train_bc_batched_{group.name.replace('-', '_')}"
        input:
            train=sorted({f"{RES}/atari/{run.game}/demos/train.npz" for run in group.runs}),
        output:
            runs=[directory(f"{RES}/atari/{run.game}/runs/{run.name}") for run in group.runs],
        log:
            f"logs/batched/train_bc/{group.name}.log",
        benchmark:
            f"{RES}/benchmarks/batched/train_bc/{group.name}.tsv"
        params:
            width=group.width,
            # Which runs share a process (batched.max_models) sets the speed, not the runs' results.
            members=SpeedFlags(batched_members(group)),
            lr=ATARI["bc"]["lr"],
            batch_size=ATARI["bc"]["batch_size"],
            clip=grad_clip_flag(ATARI["bc"]),
            speed=SpeedFlags(f"--vectorize {ATARI['bc']['batched']['vectorize']} {training_speed(ATARI)}"),
            work_dir=f"{RES}/atari/batched/unfinished/{group.name}",
        threads: ATARI["bc"]["threads"]
        resources:
            **batched_resources(group),
        conda:
            CONDA_ENV
        shell:
            "{ILSCALING} train-bc-batched --width {params.width} --members '{params.members}' "
            "--lr {params.lr} --batch-size {params.batch_size} {params.clip} --num-threads {threads} "
            "{params.speed} --work-dir {params.work_dir} > {log} 2>&1"

    workflow.ruleorder(f"train_bc_batched_{group.name.replace('-', '_')}", "train_bc")


rule train_nethack_bc:
    input:
        split=NH_DIR + "/data/split.json",
    output:
        run=directory(NH_DIR + "/runs/w{width}-s{seed}"),
    log:
        "logs/NetHack/train_bc/w{width}-s{seed}.log",
    benchmark:
        RES + "/benchmarks/NetHack/train_bc/w{width}-s{seed}.tsv"
    params:
        budgets=lambda wc: " ".join(budget_label(b) for b in run_of(wc, NETHACK).budgets),
        lr=lr_flags(NH["bc"]) if NH else None,
        batch_size=NH["bc"]["batch_size"] if NH else None,
        unroll=NH["bc"]["unroll"] if NH else None,
        model=NH.get("model"),
        clip=grad_clip_flag(NH["bc"]) if NH else "",
        speed=lambda wc: training_speed(NH),
        work_dir=NH_DIR + "/unfinished/w{width}-s{seed}",
    threads: NH["bc"]["threads"] if NH else 1
    resources:
        runtime=requested(bc_request, "runtime"),
        mem_mb=requested(bc_request, "mem_mb"),
        gpu=requested(bc_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-bc --game NetHack --width {wildcards.width} --seed {wildcards.seed} "
        "--budgets {params.budgets} --num-actions 121 {params.lr} --batch-size {params.batch_size} "
        "--unroll {params.unroll} --core {params.model[core]} --variant {params.model[variant]} {params.clip} "
        "--num-threads {threads} {params.speed} --train {input.split} --out-dir {output.run} "
        "--work-dir {params.work_dir} > {log} 2>&1"
