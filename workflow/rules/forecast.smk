# The paper's headline experiment, per game: forecast the compute-optimal agent at C* from the
# fits, train it for exactly C* FLOPs, evaluate it with more games, and judge the forecast.
# C* comes from the forecast section alone (forecast_budget below); the fit rule forecasts at the
# same C* (fit_options), and `ilscaling forecast` refuses fits made at another one.
# The width is only known once the fits exist: the training job reads it from forecast.json.
import json

from ilscaling.config import forecast_budget, forecast_episodes, model_sizes
from ilscaling.forecast import format_sizes

FORECAST = config["forecast"]
FORECAST_DIR = RES + "/forecast/{game}"


def forecast_label(game):
    return budget_label(forecast_budget(config, game))


def training_data(wildcards):
    return NH_DIR + "/data/split.json" if wildcards.game == NETHACK else f"{RES}/atari/{wildcards.game}/demos/train.npz"


def heldout_data(wildcards):
    return NH_DIR + "/data/split.json" if wildcards.game == NETHACK else f"{RES}/atari/{wildcards.game}/demos/heldout.npz"


def family_section(game):
    return NH if game == NETHACK else ATARI


def forecast_model_flags(wildcards):
    """The trainer's model and optimiser flags of the game's family (as train_bc / train_nethack_bc)."""
    bc = family_section(wildcards.game)["bc"]
    if wildcards.game == NETHACK:
        model = NH["model"]
        family_flags = f"--num-actions 121 --unroll {bc['unroll']} --core {model['core']} --variant {model['variant']}"
    else:
        family_flags = f"--num-actions {num_actions(wildcards.game)}"
    return (f"{family_flags} {grad_clip_flag(bc)} --seed {bc['seeds'][0]} {lr_flags(bc)} "
            f"--batch-size {bc['batch_size']}")


def forecast_threads(game, stage):
    section = family_section(game)
    if stage == "train":
        return section["bc"]["threads"]
    evaluation = section["evaluation"]
    return max(evaluation.get("processes", 1), evaluation["threads"])


def forecast_eval_flags(wildcards):
    """The sweep's evaluation flags of the game's family, with the forecast's number of games."""
    evaluation = family_section(wildcards.game)["evaluation"]
    flags = (f"--episodes {forecast_episodes(config, wildcards.game)} --seed {config['seed']} "
             f"--max-episode-steps {evaluation['max_episode_steps']}")
    return flags + (f" --env {evaluation['env']}" if wildcards.game == NETHACK else "")


def forecast_eval_speed(wildcards):
    """The sweep's evaluation speed flags of the game's family (common.smk: SpeedFlags)."""
    if wildcards.game == NETHACK:
        return SpeedFlags(f"{evaluation_speed(NH)} {ttyrec_flag(RES + '/forecast/NetHack/eval-ttyrecs')}")
    return SpeedFlags(f"{evaluation_speed(ATARI)} --threads {ATARI['evaluation']['threads']}")


def forecast_outputs():
    if not FORECAST["enabled"]:
        return []
    return [
        *expand(FORECAST_DIR + "/{name}", game=FORECAST_GAMES, name=("forecast.json", "verdict.json", "forecast.png", "forecast.pdf")),
        RES + "/forecast/verdict.md",
        RES + "/report/headline_forecast.rst",  # report.smk: the front page's table of verdicts
    ]


rule forecast_agent:
    input:
        fits=RES + "/scaling/fits.nc",
        card=lambda wc: card_file(wc.game),
    output:
        FORECAST_DIR + "/forecast.json",
    log:
        "logs/{game}/forecast/forecast_agent.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/forecast_agent.tsv"
    params:
        budget=lambda wc: forecast_budget(config, wc.game),
        sizes=lambda wc: format_sizes(model_sizes(config, wc.game)),
        method=FORECAST["method"],
        max_epochs=lambda wc: family_section(wc.game)["bc"]["max_epochs"],
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} forecast --fits {input.fits} --game {wildcards.game} --budget {params.budget} "
        "--sizes {params.sizes} --method {params.method} --data-card {input.card} --max-epochs {params.max_epochs} "
        "--out {output} > {log} 2>&1"


rule train_forecast_agent:
    input:
        forecast=FORECAST_DIR + "/forecast.json",
        train=training_data,
    output:
        run=directory(FORECAST_DIR + "/run"),
    log:
        "logs/{game}/forecast/train_forecast_agent.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/train_forecast_agent.tsv"
    params:
        flags=forecast_model_flags,
        speed=lambda wc: training_speed(family_section(wc.game)),
        work_dir=FORECAST_DIR + "/unfinished",
    threads: lambda wc: forecast_threads(wc.game, "train")
    resources:
        runtime=requested(forecast_training_request, "runtime"),
        mem_mb=requested(forecast_training_request, "mem_mb"),
        gpu=requested(forecast_training_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-forecast --forecast {input.forecast} {params.flags} --num-threads {threads} {params.speed} "
        "--train {input.train} --out-dir {output.run} --work-dir {params.work_dir} > {log} 2>&1"


rule evaluate_forecast_agent:
    input:
        run=FORECAST_DIR + "/run",
        heldout=heldout_data,
    output:
        FORECAST_DIR + "/eval.json",
    log:
        "logs/{game}/forecast/evaluate_forecast_agent.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/evaluate_forecast_agent.tsv"
    params:
        checkpoint=lambda wc, input: f"{input.run}/c{forecast_label(wc.game)}.pt",
        flags=forecast_eval_flags,
        speed=forecast_eval_speed,
    threads: lambda wc: forecast_threads(wc.game, "evaluate")
    resources:
        runtime=requested(forecast_evaluation_request, "runtime"),
        mem_mb=requested(forecast_evaluation_request, "mem_mb"),
        gpu=requested(forecast_evaluation_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --checkpoint {params.checkpoint} --heldout {input.heldout} --out {output} "
        "{params.flags} {params.speed} > {log} 2>&1"


rule forecast_verdict:
    input:
        forecast=FORECAST_DIR + "/forecast.json",
        evaluation=FORECAST_DIR + "/eval.json",
        fits=RES + "/scaling/fits.nc",
    output:
        verdict=FORECAST_DIR + "/verdict.json",
        png=report_if_made(
            FORECAST_DIR + "/forecast.png",
            games=FORECAST_GAMES,
            category="Forecast",
            subcategory="{game}",
            caption="../report/forecast_figure.rst",
        ),
        pdf=FORECAST_DIR + "/forecast.pdf",
    log:
        "logs/{game}/forecast/forecast_verdict.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/forecast_verdict.tsv"
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} forecast-verdict --forecast {input.forecast} --evaluation {input.evaluation} "
        "--fits {input.fits} --out {output.verdict} --figure-dir $(dirname {output.png}) > {log} 2>&1"


rule forecast_report:
    input:
        verdicts=expand(FORECAST_DIR + "/verdict.json", game=FORECAST_GAMES),
    output:
        report_if_made(RES + "/forecast/verdict.md", category="Forecast", caption="../report/forecast_verdict.rst"),
    log:
        "logs/forecast_report.log",
    benchmark:
        RES + "/benchmarks/forecast_report.tsv"
    params:
        references=json.dumps(FORECAST["references"]),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} forecast-report --verdicts {input.verdicts} --out {output} "
        "--references {params.references:q} > {log} 2>&1"
