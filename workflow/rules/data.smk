# Per game, the expert's play: its source (Atari: a PPO expert; NetHack: the bot's games), then the
# demonstrations, their train/held-out split and their card. What each stage does is the game's
# family's (families/); NetHack from NLD-AA on disk skips the expert stage.


rule make_expert:
    output:
        expert=directory("results/{game}/expert"),
    log:
        "logs/{game}/make_expert.log",
    benchmark:
        "results/benchmarks/{game}/make_expert.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.data_stage_threads(config, wc.game, "expert")
    resources:
        runtime=requested(expert_request, "runtime"),
        mem_mb=requested(expert_request, "mem_mb"),
        gpu=requested(expert_request, "gpu"),
    params:
        job=lambda wc: jobs.data_stage(config, wc.game, "expert"),
    shell:
        "ilscaling make-expert --game {wildcards.game} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--out-dir {output.expert} > {log} 2>&1"


rule make_dataset:
    input:
        source=dataset_source,
    output:
        data=directory("results/{game}/data"),
    log:
        "logs/{game}/make_dataset.log",
    benchmark:
        "results/benchmarks/{game}/make_dataset.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.data_stage_threads(config, wc.game, "dataset")
    resources:
        runtime=requested(dataset_request, "runtime"),
        mem_mb=requested(dataset_request, "mem_mb"),
        gpu=requested(dataset_request, "gpu"),
    params:
        job=lambda wc: jobs.data_stage(config, wc.game, "dataset"),
    shell:
        "ilscaling make-dataset --game {wildcards.game} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--source {input.source} --out-dir {output.data} > {log} 2>&1"
