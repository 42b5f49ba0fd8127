# Held-out loss and sampled-policy return of every checkpoint; then one table of all results.


rule evaluate_checkpoint:
    input:
        run=GAME_DIR + "/runs/w{width}-s{seed}",
        heldout=GAME_DIR + "/demos/heldout.npz",
    output:
        GAME_DIR + "/eval/w{width}-s{seed}-c{budget}.json",
    log:
        "logs/{game}/evaluate/w{width}-s{seed}-c{budget}.log",
    benchmark:
        RES + "/benchmarks/{game}/evaluate/w{width}-s{seed}-c{budget}.tsv"
    params:
        evaluation=ATARI.get("evaluation"),
        seed=config["seed"],
    threads: ATARI["evaluation"]["threads"] if ATARI else 1
    resources:
        runtime=requested(evaluation_request, "runtime"),
        mem_mb=requested(evaluation_request, "mem_mb"),
        gpu=requested(evaluation_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --checkpoint {input.run}/c{wildcards.budget}.pt --heldout {input.heldout} "
        "--out {output} --episodes {params.evaluation[episodes]} --seed {params.seed} "
        "--max-episode-steps {params.evaluation[max_episode_steps]} --threads {threads} "
        "--device {params.evaluation[device]} > {log} 2>&1"


rule evaluate_nethack_checkpoint:
    input:
        run=NH_DIR + "/runs/w{width}-s{seed}",
        split=NH_DIR + "/data/split.json",
    output:
        NH_DIR + "/eval/w{width}-s{seed}-c{budget}.json",
    log:
        "logs/NetHack/evaluate/w{width}-s{seed}-c{budget}.log",
    benchmark:
        RES + "/benchmarks/NetHack/evaluate/w{width}-s{seed}-c{budget}.tsv"
    params:
        evaluation=NH.get("evaluation"),
        envs=lambda wc: f"--envs {NH['evaluation']['envs']}" if NH["evaluation"]["envs"] else "",
        ttyrecs=lambda wc: (
            f"--ttyrec-dir {NH_DIR}/eval-ttyrecs/w{wc.width}-s{wc.seed}-c{wc.budget}"
            if NH["evaluation"]["keep_ttyrecs"]
            else ""
        ),
        seed=config["seed"],
    threads: max(NH["evaluation"]["processes"], NH["evaluation"]["threads"]) if NH else 1
    resources:
        runtime=requested(evaluation_request, "runtime"),
        mem_mb=requested(evaluation_request, "mem_mb"),
        gpu=requested(evaluation_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --checkpoint {input.run}/c{wildcards.budget}.pt --heldout {input.split} "
        "--out {output} --episodes {params.evaluation[episodes]} --seed {params.seed} {params.envs} "
        "--processes {params.evaluation[processes]} --threads {params.evaluation[threads]} {params.ttyrecs} "
        "--max-episode-steps {params.evaluation[max_episode_steps]} --device {params.evaluation[device]} "
        "--env {params.evaluation[env]} > {log} 2>&1"


rule gather_results:
    input:
        evals=lambda wc: [path for game in GAMES for path in eval_files(game)],
        cards=card_files(),
    output:
        nc=RES + "/scaling/results.nc",
        csv=RES + "/scaling/results.csv",
    log:
        "logs/gather_results.log",
    benchmark:
        RES + "/benchmarks/gather_results.tsv"
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} gather --evals {input.evals} --cards {input.cards} "
        "--out-nc {output.nc} --out-csv {output.csv} > {log} 2>&1"
