# The headline numbers of the report's front page (workflow/report/frontpage.rst, the Snakefile's
# `report:`), as reStructuredText tables; the front page takes in each once it is a report item.


rule headline_laws:
    input:
        "results/scaling/fits.nc",
    output:
        report_if_made(
            "results/report/headline_laws.rst",
            category="Fits",
            caption="../report/headline.rst",
        ),
    log:
        "logs/headline_laws.log",
    benchmark:
        "results/benchmarks/headline_laws.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling headline-laws --fits {input} --out {output} > {log} 2>&1"


rule headline_forecast:
    input:
        expand("results/forecast/{game}/verdict.json", game=FORECAST_GAMES),
    output:
        report_if_made(
            "results/report/headline_forecast.rst",
            category="Forecast",
            caption="../report/headline.rst",
        ),
    log:
        "logs/headline_forecast.log",
    benchmark:
        "results/benchmarks/headline_forecast.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling headline-forecast --verdicts {input} --out {output} > {log} 2>&1"
