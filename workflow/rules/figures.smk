# Figures of each game, regenerated from the results and fits files (no refitting).

OVERVIEW_CATEGORY = "At a glance"  # sorts before every other category of the report


rule plot_game:
    input:
        results="results/scaling/results.nc",
        fits="results/scaling/fits.nc",
    output:
        png=report_if_made(
            expand("results/figures/{{game}}/{stem}.png", stem=FIGURE_STEMS),
            category="Figures",
            subcategory="{game}",
            caption="../report/figure.rst",
        ),
        pdf=expand("results/figures/{{game}}/{stem}.pdf", stem=FIGURE_STEMS),
        # The laws at a glance open the report's results: its menu lists categories alphabetically.
        overview=report_if_made(
            f"results/figures/{{game}}/{OVERVIEW_STEM}.png",
            category=OVERVIEW_CATEGORY,
            labels=lambda wildcards: {"game": wildcards.game},
            caption="../report/overview.rst",
        ),
        overview_pdf=f"results/figures/{{game}}/{OVERVIEW_STEM}.pdf",
    log:
        "logs/{game}/plot_game.log",
    benchmark:
        "results/benchmarks/{game}/plot_game.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    shell:
        "ilscaling plot --results {input.results} --fits {input.fits} --game {wildcards.game} "
        "--out-dir $(dirname {output.png[0]}) > {log} 2>&1"
