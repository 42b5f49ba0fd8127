# Re-fit published results (the authors' experiment_data, or a tidy CSV) with no training:
#   snakemake published --config "published={path: ../shared/published/atari}" --cores 2
# writes results/published/{results.nc, results.csv, fits.nc, summary.md, figures/<game>/...}.
from ilscaling.published import list_games

PUB = RES + "/published"
PUBLISHED_PATH = config.get("published", {}).get("path")
PUBLISHED_GAMES = list_games(PUBLISHED_PATH) if PUBLISHED_PATH else []


def published_path(wildcards):
    if not PUBLISHED_PATH:
        raise ValueError("target `published` needs --config 'published={path: <experiment_data folder or .csv>}'")
    return PUBLISHED_PATH


rule ingest_published:
    input:
        published_path,
    output:
        nc=PUB + "/results.nc",
        csv=PUB + "/results.csv",
    log:
        "logs/published/ingest.log",
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} ingest-published --path {input} --out-nc {output.nc} --out-csv {output.csv} > {log} 2>&1"


rule fit_published:
    input:
        PUB + "/results.nc",
    output:
        fits=PUB + "/fits.nc",
        summary=report(PUB + "/summary.md", category="Published fits", caption="../report/summary.rst"),
    log:
        "logs/published/fit.log",
    params:
        options=fit_options(loss_metric="cross_entropy"),  # published results have no KL
    benchmark:
        RES + "/benchmarks/published/fit.tsv"
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} fit --results {input} --out-nc {output.fits} --summary {output.summary} "
        "{params.options} > {log} 2>&1"


rule plot_published_game:
    input:
        results=PUB + "/results.nc",
        fits=PUB + "/fits.nc",
    output:
        png=report(
            expand(PUB + "/figures/{{game}}/{stem}.png", stem=(OVERVIEW_STEM, *FIGURE_STEMS)),
            category="Published figures",
            subcategory="{game}",
            caption="../report/figure.rst",
        ),
        pdf=expand(PUB + "/figures/{{game}}/{stem}.pdf", stem=(OVERVIEW_STEM, *FIGURE_STEMS)),
    log:
        "logs/published/{game}/plot.log",
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} plot --results {input.results} --fits {input.fits} --game {wildcards.game} "
        "--out-dir $(dirname {output.png[0]}) > {log} 2>&1"


rule published:
    input:
        PUB + "/results.nc",
        PUB + "/fits.nc",
        PUB + "/summary.md",
        expand(PUB + "/figures/{game}/{stem}.{ext}", game=PUBLISHED_GAMES, stem=(OVERVIEW_STEM, *FIGURE_STEMS), ext=("png", "pdf")),
