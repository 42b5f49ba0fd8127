# isoFLOP profiles and power laws of every game, from the gathered results alone.
from ilscaling.config import forecast_budget


def fit_options(games=None, loss_metric=None):
    """Every fit: key of the config as an `ilscaling fit` flag, and, for the study's `games`, C*.

    `loss_metric`, when given, replaces fit.loss_metric (published results hold only cross entropy).

    C* has one source, the forecast section: each game's C* is passed exactly as the forecast
    stage trains it (forecast_budget). Without games (the `published` re-fits, where no agent is
    trained) the fit forecasts at its default, 10x each game's largest budget.
    """
    flags = []
    settings = {**config["fit"], **({"loss_metric": loss_metric} if loss_metric else {})}
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None:
            flags.append(f"{flag} {float(value) if key == 'forecast_budget' else value}")
    if games:
        flags.append("--forecast-budgets " + ",".join(f"{game}={forecast_budget(config, game)!r}" for game in games))
    return " ".join(flags)


rule fit_scaling_laws:
    input:
        RES + "/scaling/results.nc",
    output:
        fits=RES + "/scaling/fits.nc",
        summary=report_if_made(RES + "/scaling/summary.md", category="Fits", caption="../report/summary.rst"),
    log:
        "logs/fit_scaling_laws.log",
    benchmark:
        RES + "/benchmarks/fit_scaling_laws.tsv"
    params:
        options=fit_options(GAMES),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} fit --results {input} --out-nc {output.fits} --summary {output.summary} "
        "{params.options} > {log} 2>&1"
