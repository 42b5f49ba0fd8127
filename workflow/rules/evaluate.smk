# Held-out loss and sampled-policy return of every checkpoint; then one table of all results.


rule evaluate_checkpoint:
    input:
        run="results/{game}/runs/w{width}-s{seed}",
        data="results/{game}/data",
    output:
        "results/{game}/eval/w{width}-s{seed}-c{budget}.json",
    log:
        "logs/{game}/evaluate/w{width}-s{seed}-c{budget}.log",
    benchmark:
        "results/benchmarks/{game}/evaluate/w{width}-s{seed}-c{budget}.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.evaluation_threads(config, wc.game)
    resources:
        runtime=requested(evaluation_request, "runtime"),
        mem_mb=requested(evaluation_request, "mem_mb"),
        gpu=requested(evaluation_request, "gpu"),
    params:
        job=lambda wc: jobs.evaluation(
            config,
            wc.game,
            ttyrec_dir=f"results/{wc.game}/eval-ttyrecs/w{wc.width}-s{wc.seed}-c{wc.budget}",
        ),
        heldout=lambda wc: data_file(wc.game, "heldout"),
    shell:
        "ilscaling evaluate --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--checkpoint {input.run}/c{wildcards.budget}.pt --heldout {params.heldout} --out {output} > {log} 2>&1"


rule gather_results:
    input:
        evals=lambda wc: [path for game in GAMES for path in eval_files(game)],
        data=expand("results/{game}/data", game=GAMES),
    output:
        nc="results/scaling/results.nc",
        csv="results/scaling/results.csv",
    log:
        "logs/gather_results.log",
    benchmark:
        "results/benchmarks/gather_results.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    params:
        cards=card_files(),
    shell:
        "ilscaling gather --evals {input.evals} --cards {params.cards} "
        "--out-nc {output.nc} --out-csv {output.csv} > {log} 2>&1"
