# The paper's headline experiment, per game: forecast the compute-optimal agent at C* from the
# fits, train it for exactly C* FLOPs, evaluate it with more games, and judge the forecast.
# C* comes from the forecast section alone (forecast_budget below); the fit rule forecasts at the
# same C* (fit_options), and `ilscaling forecast` refuses fits made at another one.
# The width is only known once the fits exist: the training job reads it from forecast.json.
import json

from ilscaling.config import model_sizes
from ilscaling.forecast import format_sizes

FORECAST = config["forecast"]
FORECAST_DIR = RES + "/forecast/{game}"


def forecast_label(game):
    return budget_label(forecast_budget(config, game))


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
        data=GAME_DIR + "/data",
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
        max_epochs=lambda wc: config[family_of(wc.game).section]["bc"]["max_epochs"],
        card=lambda wc: data_file(wc.game, "card"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} forecast --fits {input.fits} --game {wildcards.game} --budget {params.budget} "
        "--sizes {params.sizes} --method {params.method} --data-card {params.card} --max-epochs {params.max_epochs} "
        "--out {output} > {log} 2>&1"


rule train_forecast_agent:
    input:
        forecast=FORECAST_DIR + "/forecast.json",
        data=GAME_DIR + "/data",
    output:
        run=directory(FORECAST_DIR + "/run"),
    log:
        "logs/{game}/forecast/train_forecast_agent.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/train_forecast_agent.tsv"
    params:
        job=lambda wc: jobs.training(config, wc.game),  # the sweep's, its width and budget from the forecast
        train=lambda wc: data_file(wc.game, "train"),
        work_dir=FORECAST_DIR + "/unfinished",
    threads: lambda wc: jobs.training_threads(config, wc.game)
    resources:
        runtime=requested(forecast_training_request, "runtime"),
        mem_mb=requested(forecast_training_request, "mem_mb"),
        gpu=requested(forecast_training_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-forecast --forecast {input.forecast} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--num-threads {threads} --train {params.train} --out-dir {output.run} --work-dir {params.work_dir} > {log} 2>&1"


rule evaluate_forecast_agent:
    input:
        run=FORECAST_DIR + "/run",
        data=GAME_DIR + "/data",
    output:
        FORECAST_DIR + "/eval.json",
    log:
        "logs/{game}/forecast/evaluate_forecast_agent.log",
    benchmark:
        RES + "/benchmarks/{game}/forecast/evaluate_forecast_agent.tsv"
    params:
        job=lambda wc: jobs.evaluation(config, wc.game, forecast=True, ttyrec_dir=f"{RES}/forecast/{wc.game}/eval-ttyrecs"),
        checkpoint=lambda wc, input: f"{input.run}/c{forecast_label(wc.game)}.pt",
        heldout=lambda wc: data_file(wc.game, "heldout"),
    threads: lambda wc: jobs.evaluation_threads(config, wc.game)
    resources:
        runtime=requested(forecast_evaluation_request, "runtime"),
        mem_mb=requested(forecast_evaluation_request, "mem_mb"),
        gpu=requested(forecast_evaluation_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} evaluate --spec {params.job[0]:q} --speed {params.job[1]:q} --checkpoint {params.checkpoint} "
        "--heldout {params.heldout} --out {output} > {log} 2>&1"


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
