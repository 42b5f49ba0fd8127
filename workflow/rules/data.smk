# Per game, the expert's play: its source (Atari: a PPO expert; NetHack: the bot's games), then the
# demonstrations, their train/held-out split and their card. What each stage does is the game's
# family's (families/); NetHack from NLD-AA on disk skips the expert stage.


rule make_expert:
    output:
        expert=directory(GAME_DIR + "/expert"),
    log:
        "logs/{game}/make_expert.log",
    benchmark:
        RES + "/benchmarks/{game}/make_expert.tsv"
    params:
        job=lambda wc: jobs.data_stage(config, wc.game, "expert"),
    threads: lambda wc: jobs.data_stage(config, wc.game, "expert")[2]
    resources:
        runtime=requested(expert_request, "runtime"),
        mem_mb=requested(expert_request, "mem_mb"),
        gpu=requested(expert_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} make-expert --game {wildcards.game} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--out-dir {output.expert} > {log} 2>&1"


def dataset_source(wildcards):
    """The expert stage's folder, or the game's data already on disk (none while missing: a dry run)."""
    source = family_of(wildcards.game).dataset_source(config, wildcards.game, f"{RES}/{wildcards.game}/expert")
    return [] if MISSING_DATA and source != f"{RES}/{wildcards.game}/expert" else source


rule make_dataset:
    input:
        source=dataset_source,
    output:
        data=directory(GAME_DIR + "/data"),
    log:
        "logs/{game}/make_dataset.log",
    benchmark:
        RES + "/benchmarks/{game}/make_dataset.tsv"
    params:
        job=lambda wc: jobs.data_stage(config, wc.game, "dataset"),
    threads: lambda wc: jobs.data_stage(config, wc.game, "dataset")[2]
    resources:
        runtime=requested(dataset_request, "runtime"),
        mem_mb=requested(dataset_request, "mem_mb"),
        gpu=requested(dataset_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} make-dataset --game {wildcards.game} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--source {input.source} --out-dir {output.data} > {log} 2>&1"
