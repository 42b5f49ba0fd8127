# isoFLOP profiles and power laws of every game, from the gathered results alone.
rule fit_scaling_laws:
    input:
        "results/scaling/results.nc",
    output:
        fits="results/scaling/fits.nc",
        summary=report_if_made(
            "results/scaling/summary.md",
            category="Fits",
            caption="../report/summary.rst",
        ),
    log:
        "logs/fit_scaling_laws.log",
    benchmark:
        "results/benchmarks/fit_scaling_laws.tsv"
    conda:
        CONDA_ENV
    resources:
        **SMALL_JOB,
    params:
        spec=jobs.fit(config, GAMES),
    shell:
        "ilscaling fit --spec {params.spec:q} --results {input} --out-nc {output.fits} "
        "--summary {output.summary} > {log} 2>&1"
