# Held-out loss and sampled-policy return of every checkpoint; then one table of all results.


rule evaluate_checkpoint:
    input:
        run=GAME_DIR + "/runs/w{width}-s{seed}",
        data=GAME_DIR + "/data",
    output:
        GAME_DIR + "/eval/w{width}-s{seed}-c{budget}.json",
    log:
        "logs/{game}/evaluate/w{width}-s{seed}-c{budget}.log",
    benchmark:
        RES + "/benchmarks/{game}/evaluate/w{width}-s{seed}-c{budget}.tsv"
    params:
        job=lambda wc: jobs.evaluation(config, wc.game, ttyrec_dir=f"{RES}/{wc.game}/eval-ttyrecs/w{wc.width}-s{wc.seed}-c{wc.budget}"),
        heldout=lambda wc: data_file(wc.game, "heldout"),
    threads: lambda wc: jobs.evaluation_threads(config, wc.game)
    resources:
        runtime=requested(evaluation_request, "runtime"),
        mem_mb=requested(evaluation_request, "mem_mb"),
        gpu=requested(evaluation_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--checkpoint {input.run}/c{wildcards.budget}.pt --heldout {params.heldout} --out {output} > {log} 2>&1"


rule gather_results:
    input:
        evals=lambda wc: [path for game in GAMES for path in eval_files(game)],
        data=expand(GAME_DIR + "/data", game=GAMES),
    output:
        nc=RES + "/scaling/results.nc",
        csv=RES + "/scaling/results.csv",
    params:
        cards=card_files(),
    log:
        "logs/gather_results.log",
    benchmark:
        RES + "/benchmarks/gather_results.tsv"
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} gather --evals {input.evals} --cards {params.cards} "
        "--out-nc {output.nc} --out-csv {output.csv} > {log} 2>&1"
