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
        evaluation=ATARI["evaluation"],
        seed=config["seed"],
    threads: ATARI["evaluation"]["threads"]
    resources:
        mem_mb=2000,
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --checkpoint {input.run}/c{wildcards.budget}.pt --heldout {input.heldout} "
        "--out {output} --episodes {params.evaluation[episodes]} --seed {params.seed} "
        "--max-episode-steps {params.evaluation[max_episode_steps]} --threads {threads} > {log} 2>&1"


rule gather_results:
    input:
        evals=lambda wc: [path for game in GAMES for path in eval_files(game)],
        cards=expand(GAME_DIR + "/demos/card.json", game=GAMES),
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
