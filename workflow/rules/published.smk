# Re-fit published results (the authors' experiment_data, or a tidy CSV) with no training:
#   snakemake published --config "published={path: ../shared/published/atari}" --cores 2
# writes results/published/{results.nc, results.csv, fits.nc, summary.md, figures/<game>/...}.
rule ingest_published:
    input:
        published_path,
    output:
        nc="results/published/results.nc",
        csv="results/published/results.csv",
    log:
        "logs/published/ingest.log",
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling ingest-published --path {input} --out-nc {output.nc} --out-csv {output.csv} > {log} 2>&1"


rule fit_published:
    input:
        "results/published/results.nc",
    output:
        fits="results/published/fits.nc",
        summary=report(
            "results/published/summary.md",
            category="Published fits",
            caption="../report/summary.rst",
        ),
    log:
        "logs/published/fit.log",
    benchmark:
        "results/benchmarks/published/fit.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    params:
        spec=jobs.fit(config, loss_metric="cross_entropy"),  # published results have no KL
    shell:
        "ilscaling fit --spec {params.spec:q} --results {input} --out-nc {output.fits} "
        "--summary {output.summary} > {log} 2>&1"


rule plot_published_game:
    input:
        results="results/published/results.nc",
        fits="results/published/fits.nc",
    output:
        png=report(
            expand(
                "results/published/figures/{{game}}/{stem}.png",
                stem=(OVERVIEW_STEM, *FIGURE_STEMS),
            ),
            category="Published figures",
            subcategory="{game}",
            caption="../report/figure.rst",
        ),
        pdf=expand(
            "results/published/figures/{{game}}/{stem}.pdf",
            stem=(OVERVIEW_STEM, *FIGURE_STEMS),
        ),
    log:
        "logs/published/{game}/plot.log",
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling plot --results {input.results} --fits {input.fits} --game {wildcards.game} "
        "--out-dir $(dirname {output.png[0]}) > {log} 2>&1"


rule published:
    input:
        "results/published/results.nc",
        "results/published/fits.nc",
        "results/published/summary.md",
        expand(
            "results/published/figures/{game}/{stem}.{ext}",
            game=PUBLISHED_GAMES,
            stem=(OVERVIEW_STEM, *FIGURE_STEMS),
            ext=("png", "pdf"),
        ),
