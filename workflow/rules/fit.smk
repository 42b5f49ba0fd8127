# isoFLOP profiles and power laws of every game, from the gathered results alone.


rule fit_scaling_laws:
    input:
        RES + "/scaling/results.nc",
    output:
        fits=RES + "/scaling/fits.nc",
        summary=report(RES + "/scaling/summary.md", category="Fits", caption="../report/summary.rst"),
    log:
        "logs/fit_scaling_laws.log",
    params:
        edge="--exclude-edge-budgets" if config["fit"]["exclude_edge_budgets"] else "--no-exclude-edge-budgets",
        min_sizes=config["fit"]["min_sizes_per_budget"],
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} fit --results {input} --out-nc {output.fits} --summary {output.summary} "
        "{params.edge} --min-sizes-per-budget {params.min_sizes} > {log} 2>&1"
