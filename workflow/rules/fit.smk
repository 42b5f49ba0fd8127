# isoFLOP profiles and power laws of every game, from the gathered results alone.


def fit_options():
    """Every fit: key of the config as an `ilscaling fit` flag."""
    flags = []
    for key, value in config["fit"].items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None:
            flags.append(f"{flag} {float(value) if key == 'forecast_budget' else value}")
    return " ".join(flags)


rule fit_scaling_laws:
    input:
        RES + "/scaling/results.nc",
    output:
        fits=RES + "/scaling/fits.nc",
        summary=report(RES + "/scaling/summary.md", category="Fits", caption="../report/summary.rst"),
    log:
        "logs/fit_scaling_laws.log",
    benchmark:
        RES + "/benchmarks/fit_scaling_laws.tsv"
    params:
        options=fit_options(),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} fit --results {input} --out-nc {output.fits} --summary {output.summary} "
        "{params.options} > {log} 2>&1"
