# The paper's headline experiment, per game: forecast the compute-optimal agent at C* from the
# fits, train it for exactly C* FLOPs, evaluate it with more games, and judge the forecast.
# C* comes from the forecast section alone (forecast_budget below); the fit rule forecasts at the
# same C* (jobs.fit), and `ilscaling forecast` refuses fits made at another one.
# The width is only known once the fits exist: the training job reads it from forecast.json.
rule forecast_agent:
    input:
        fits="results/scaling/fits.nc",
        data="results/{game}/data",
    output:
        "results/forecast/{game}/forecast.json",
    log:
        "logs/{game}/forecast/forecast_agent.log",
    benchmark:
        "results/benchmarks/{game}/forecast/forecast_agent.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    params:
        budget=lambda wc: forecast_budget(config, wc.game),
        sizes=lambda wc: format_sizes(model_sizes(config, wc.game)),
        method=FORECAST["method"],
        max_epochs=lambda wc: config[family_of(wc.game).section]["bc"]["max_epochs"],
        card=lambda wc: data_file(wc.game, "card"),
    shell:
        "ilscaling forecast --fits {input.fits} --game {wildcards.game} --budget {params.budget} "
        "--sizes {params.sizes} --method {params.method} --data-card {params.card} --max-epochs {params.max_epochs} "
        "--out {output} > {log} 2>&1"


rule train_forecast_agent:
    input:
        forecast="results/forecast/{game}/forecast.json",
        data="results/{game}/data",
    output:
        run=directory("results/forecast/{game}/run"),
    log:
        "logs/{game}/forecast/train_forecast_agent.log",
    benchmark:
        "results/benchmarks/{game}/forecast/train_forecast_agent.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.training_threads(config, wc.game)
    resources:
        runtime=requested(forecast_training_request, "runtime"),
        mem_mb=requested(forecast_training_request, "mem_mb"),
        gpu=requested(forecast_training_request, "gpu"),
        slurm_extra=job_resources.PREEMPTION_SIGNAL,
    params:
        job=lambda wc: jobs.training(config, wc.game),  # the sweep's, its width and budget from the forecast
        train=lambda wc: data_file(wc.game, "train"),
        work_dir="results/forecast/{game}/unfinished",
    shell:
        "ilscaling train-forecast --forecast {input.forecast} --spec {params.job[0]:q} --speed {params.job[1]:q} "
        "--num-threads {threads} --train {params.train} --out-dir {output.run} --work-dir {params.work_dir} > {log} 2>&1"


rule evaluate_forecast_agent:
    input:
        run="results/forecast/{game}/run",
        data="results/{game}/data",
    output:
        "results/forecast/{game}/eval.json",
    log:
        "logs/{game}/forecast/evaluate_forecast_agent.log",
    benchmark:
        "results/benchmarks/{game}/forecast/evaluate_forecast_agent.tsv"
    conda:
        CONDA_ENV
    threads: lambda wc: jobs.evaluation_threads(config, wc.game)
    resources:
        runtime=requested(forecast_evaluation_request, "runtime"),
        mem_mb=requested(forecast_evaluation_request, "mem_mb"),
        gpu=requested(forecast_evaluation_request, "gpu"),
    params:
        job=lambda wc: jobs.evaluation(
            config,
            wc.game,
            forecast=True,
            ttyrec_dir=f"results/forecast/{wc.game}/eval-ttyrecs",
        ),
        checkpoint=lambda wc, input: f"{input.run}/c{forecast_label(wc.game)}.pt",
        heldout=lambda wc: data_file(wc.game, "heldout"),
    shell:
        "ilscaling evaluate --spec {params.job[0]:q} --speed {params.job[1]:q} --checkpoint {params.checkpoint} "
        "--heldout {params.heldout} --out {output} > {log} 2>&1"


rule forecast_verdict:
    input:
        forecast="results/forecast/{game}/forecast.json",
        evaluation="results/forecast/{game}/eval.json",
        fits="results/scaling/fits.nc",
    output:
        verdict="results/forecast/{game}/verdict.json",
        png=report_if_made(
            "results/forecast/{game}/forecast.png",
            games=FORECAST_GAMES,
            category="Forecast",
            subcategory="{game}",
            caption="../report/forecast_figure.rst",
        ),
        pdf="results/forecast/{game}/forecast.pdf",
    log:
        "logs/{game}/forecast/forecast_verdict.log",
    benchmark:
        "results/benchmarks/{game}/forecast/forecast_verdict.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling forecast-verdict --forecast {input.forecast} --evaluation {input.evaluation} "
        "--fits {input.fits} --out {output.verdict} --figure-dir $(dirname {output.png}) > {log} 2>&1"


rule forecast_report:
    input:
        verdicts=expand("results/forecast/{game}/verdict.json", game=FORECAST_GAMES),
    output:
        report_if_made(
            "results/forecast/verdict.md",
            category="Forecast",
            caption="../report/forecast_verdict.rst",
        ),
    log:
        "logs/forecast_report.log",
    benchmark:
        "results/benchmarks/forecast_report.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    params:
        references=json.dumps(FORECAST["references"]),
    shell:
        "ilscaling forecast-report --verdicts {input.verdicts} --out {output} "
        "--references {params.references:q} > {log} 2>&1"
