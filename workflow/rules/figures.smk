# Figures of each game, regenerated from the results and fits files (no refitting).

OVERVIEW_CATEGORY = "At a glance"  # sorts before every other category of the report


rule plot_game:
    input:
        results=RES + "/scaling/results.nc",
        fits=RES + "/scaling/fits.nc",
    output:
        png=report_if_made(
            expand(RES + "/figures/{{game}}/{stem}.png", stem=FIGURE_STEMS),
            category="Figures",
            subcategory="{game}",
            caption="../report/figure.rst",
        ),
        pdf=expand(RES + "/figures/{{game}}/{stem}.pdf", stem=FIGURE_STEMS),
        # The laws at a glance open the report's results: its menu lists categories alphabetically.
        overview=report_if_made(
            RES + "/figures/{game}/" + OVERVIEW_STEM + ".png",
            category=OVERVIEW_CATEGORY,
            labels=lambda wildcards: {"game": wildcards.game},
            caption="../report/overview.rst",
        ),
        overview_pdf=RES + "/figures/{game}/" + OVERVIEW_STEM + ".pdf",
    log:
        "logs/{game}/plot_game.log",
    benchmark:
        RES + "/benchmarks/{game}/plot_game.tsv"
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} plot --results {input.results} --fits {input.fits} --game {wildcards.game} "
        "--out-dir $(dirname {output.png[0]}) > {log} 2>&1"
