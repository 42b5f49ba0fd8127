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
        episodes=ATARI["evaluation"]["episodes"] if ATARI else None,
        max_episode_steps=ATARI["evaluation"]["max_episode_steps"] if ATARI else None,
        speed=lambda wc: evaluation_speed(ATARI),
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
        "--out {output} --episodes {params.episodes} --seed {params.seed} "
        "--max-episode-steps {params.max_episode_steps} --threads {threads} {params.speed} > {log} 2>&1"


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
        episodes=NH["evaluation"]["episodes"] if NH else None,
        max_episode_steps=NH["evaluation"]["max_episode_steps"] if NH else None,
        env=NH["evaluation"]["env"] if NH else None,
        speed=lambda wc: evaluation_speed(NH),
        ttyrecs=lambda wc: ttyrec_flag(f"{NH_DIR}/eval-ttyrecs/w{wc.width}-s{wc.seed}-c{wc.budget}"),
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
        "--out {output} --episodes {params.episodes} --seed {params.seed} --env {params.env} "
        "--max-episode-steps {params.max_episode_steps} {params.speed} {params.ttyrecs} > {log} 2>&1"


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
