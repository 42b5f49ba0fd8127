"""The commands of `ilscaling <command>`: each a dataclass of its arguments, one docstring per field
(the --help text; cli.py builds the parser from them), and a `run` that makes one call.

The workflow's jobs take a spec and a speed (ilscaling.jobs: JSON); the other commands take paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


POSITIONAL = {"positional": True}


@dataclass
class Job:
    spec: str
    """What the job computes (JSON; the workflow writes it: ilscaling.jobs)."""
    speed: str = "{}"
    """How fast the job runs, what it keeps on the side, its guards (JSON)."""

    def values(self) -> dict:
        """The spec and the speed, merged."""
        return {**json.loads(self.spec), **json.loads(self.speed)}


@dataclass(kw_only=True)
class Training(Job):
    num_threads: int | None = None
    """CPU threads for PyTorch (the job's threads)."""

    def values(self) -> dict:
        """The spec and the speed, merged; --num-threads, where given, is the job's threads."""
        values = super().values()
        if self.num_threads is not None:
            values["num_threads"] = self.num_threads
        return values


@dataclass(kw_only=True)
class MakeExpert(Job):
    """The source of a game's expert play (Atari: a PPO expert; NetHack: the bot's games)."""

    game: str
    """The game (its family does the work: ilscaling.families)."""
    out_dir: str
    """The expert stage's folder."""

    def run(self):
        from ilscaling.families import family_of

        family_of(self.game).make_expert(self.game, self.values(), Path(self.out_dir))


@dataclass(kw_only=True)
class MakeDataset(Job):
    """A game's demonstrations, their train/held-out split and card.json."""

    game: str
    """The game (its family does the work: ilscaling.families)."""
    source: str
    """The expert stage's folder, or the game's data on disk (NLD-AA's nle_data)."""
    out_dir: str
    """The dataset's folder (the family's data_files)."""

    def run(self):
        from ilscaling.families import family_of

        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        family_of(self.game).make_dataset(self.game, self.values(), Path(self.source), Path(self.out_dir))


@dataclass(kw_only=True)
class TrainBC(Training):
    """One BC run, checkpointed at its FLOP budgets (spec: train.BCArgs)."""

    train: str
    """The game's training data (the family's data_files["train"])."""
    out_dir: str
    """The finished run: one checkpoint c<budget>.pt per budget, and metrics.json."""
    work_dir: str
    """Resume state and unfinished checkpoints, outside --out-dir."""

    def run(self):
        from ilscaling.train import BCArgs, train_bc

        train_bc(BCArgs(**self.values()), self.train, self.out_dir, self.work_dir)


@dataclass(kw_only=True)
class TrainBCBatched(Training):
    """Atari BC runs of one width in one process (stacked parameters; spec: what they share)."""

    members: str
    """JSON list of each run's own spec (game, seed, num_actions, width, budgets) and its train, out_dir and
    work_dir, as train-bc would take them."""
    work_dir: str
    """The group's resume state."""

    def run(self):
        from ilscaling.train import BCArgs
        from ilscaling.train_batched import Member, train_batched

        shared = self.values()
        vectorize = shared.pop("vectorize", "auto")
        folders = ("train", "out_dir", "work_dir")
        members = [Member(BCArgs(**shared, **{k: v for k, v in m.items() if k not in folders}),
                          *(Path(m[key]) for key in folders)) for m in json.loads(self.members)]
        train_batched(members, self.work_dir, vectorize=vectorize)


@dataclass(kw_only=True)
class Evaluate(Job):
    """Held-out loss and sampled-policy return of one checkpoint (spec: evaluate.EvalArgs)."""

    checkpoint: str
    """A BC checkpoint (c<budget>.pt)."""
    heldout: str
    """The game's held-out data (the family's data_files["heldout"])."""
    out: str
    """The evaluation (.json)."""

    def run(self):
        from ilscaling.evaluate import EvalArgs, evaluate_checkpoint

        evaluate_checkpoint(self.checkpoint, self.heldout, self.out, EvalArgs(**self.values()))


@dataclass(kw_only=True)
class TrainForecast(TrainBC):
    """Train the forecast agent: the sweep's spec, its width and budget from forecast.json."""

    forecast: str
    """forecast.json of `ilscaling forecast`."""

    def run(self):
        from ilscaling.forecast import bc_args_from_forecast
        from ilscaling.io import read_json
        from ilscaling.train import TooManyEpochs, train_bc

        plan = read_json(self.forecast, "forecast")
        values = self.values()
        if values.pop("game") != plan["game"]:
            raise SystemExit(f"{self.forecast} plans a {plan['game']} agent, but the job's spec is of another game")
        bc_args = bc_args_from_forecast(plan, **values)
        print(f"{plan['game']}: forecast agent, width {bc_args.width}, {plan['samples']:.4g} samples for "
              f"C* = {plan['budget']:.4g} FLOPs")
        try:
            train_bc(bc_args, self.train, self.out_dir, self.work_dir)
        except TooManyEpochs as err:
            raise SystemExit(f"forecast agent: {err}. The width follows the fits; raise the training data, or "
                             "lower C* (forecast.budget_factor / forecast.budgets)") from None


@dataclass
class Gather:
    """All evaluations in one NetCDF (and CSV)."""

    evals: list[str]
    """Every evaluation (.json)."""
    cards: list[str]
    """Every game's data card (card.json)."""
    out_nc: str
    """results.nc"""
    out_csv: str
    """results.csv"""

    def run(self):
        from ilscaling.evaluate import gather_results

        gather_results(self.evals, self.cards, self.out_nc, self.out_csv)


@dataclass
class IngestPublished:
    """Published results (the authors' layout or a tidy CSV) into results.nc."""

    path: str
    """experiment_data, its atari/ or nethack/ folder, or a .csv table."""
    out_nc: str
    """results.nc"""
    out_csv: str | None = None
    """results.csv"""

    def run(self):
        from ilscaling.published import read_published
        from ilscaling.results_file import write_results

        dataset = read_published(self.path)
        write_results(dataset, self.out_nc, self.out_csv)
        print(f"{self.path}: {dataset.sizes['game']} games ({', '.join(map(str, dataset['game'].values))}), "
              f"{int(dataset['loss'].count())} loss and {int(dataset['return'].count())} return values")


@dataclass
class Plot:
    """Figures from the results and fits files (no refitting)."""

    results: str
    """results.nc"""
    fits: str
    """fits.nc"""
    out_dir: str
    """The figures' folder (without --game: one folder per game inside it)."""
    game: str | None = None
    """One game, into --out-dir; without it every game, into <out-dir>/<game>/."""

    def run(self):
        from ilscaling.plots import plot_all, plot_game

        if self.game is None:
            plot_all(self.results, self.fits, self.out_dir)
            return
        from ilscaling.io import open_netcdf

        with open_netcdf(self.results, "results") as results, open_netcdf(self.fits, "fits") as fits:
            plot_game(results.load(), fits.load(), self.game, Path(self.out_dir))


@dataclass
class Forecast:
    """The compute-optimal agent of one game at C*, from the fits."""

    fits: str
    """fits.nc"""
    game: str
    """The game."""
    budget: float
    """C*, FLOPs (the fits must forecast at it)."""
    sizes: list[str]
    """Buildable widths as width:params:train_flops_per_sample."""
    out: str
    """forecast.json"""
    method: str = "vertex"
    """Whose N* picks the width: vertex or parametric."""
    data_card: str | None = None
    """The game's data card: its training frames bound the width with --max-epochs."""
    max_epochs: float | None = None
    """Passes over the training data the agent may make (bc.max_epochs)."""

    def run(self):
        from ilscaling.forecast import parse_sizes, write_forecast

        if self.method not in ("vertex", "parametric"):
            raise SystemExit(f"--method: vertex or parametric, not {self.method!r}")
        write_forecast(self.fits, self.game, self.budget, parse_sizes(self.sizes), self.out, method=self.method,
                       data_card=self.data_card, max_epochs=self.max_epochs)


@dataclass
class ForecastVerdict:
    """Measured vs predicted loss and return of the forecast agent."""

    forecast: str
    """forecast.json"""
    evaluation: str
    """The forecast agent's evaluation (.json)."""
    fits: str
    """fits.nc"""
    out: str
    """verdict.json"""
    figure_dir: str
    """The folder of forecast.png and forecast.pdf."""

    def run(self):
        from ilscaling.forecast import write_verdict

        write_verdict(self.forecast, self.evaluation, self.fits, self.out, self.figure_dir)


@dataclass
class ForecastReport:
    """Every game's verdict and the reference numbers, as markdown."""

    verdicts: list[str]
    """Every game's verdict.json."""
    out: str
    """verdict.md"""
    references: str = "[]"
    """JSON list of {game, quantity, value, source, label}."""

    def run(self):
        from ilscaling.forecast import write_verdict_report

        print(write_verdict_report(self.verdicts, self.out, json.loads(self.references)))


@dataclass
class HeadlineLaws:
    """The report front page's table of fitted laws (reStructuredText)."""

    fits: str
    """fits.nc"""
    out: str
    """The table (.rst)."""

    def run(self):
        from ilscaling.frontpage import write_laws_rst

        print(write_laws_rst(self.fits, self.out))


@dataclass
class HeadlineForecast:
    """The report front page's table of forecast verdicts (reStructuredText)."""

    verdicts: list[str]
    """Every game's verdict.json."""
    out: str
    """The table (.rst)."""

    def run(self):
        from ilscaling.frontpage import write_verdicts_rst

        print(write_verdicts_rst(self.verdicts, self.out))


@dataclass
class CheckConfig:
    """Validate study config files as the workflow would, before Snakemake reads them (the file, line
    and key of any error)."""

    configfile: list[str] = field(metadata=POSITIONAL)
    """Study config files, merged in order (as `snakemake --configfile A B`)."""

    def run(self):
        from ilscaling.config import ConfigError, check_config_files

        try:
            print(check_config_files(self.configfile))
        except ConfigError as err:
            raise SystemExit(str(err)) from None


@dataclass
class ProposeGrid:
    """Print a sweep grid around the expected optimum."""

    configfile: str = "config.yaml"
    """The study config."""

    def run(self):
        from ilscaling.config import load_config
        from ilscaling.sweep import proposed_grids_yaml

        print(proposed_grids_yaml(load_config(self.configfile)))


@dataclass
class ScaleCheck:
    """Jobs and GPU-hours a configuration asks for (snakemake -n), before anything is submitted."""

    configfile: list[str] = field(default_factory=lambda: ["configs/paper-atari.yaml", "configs/paper-nethack.yaml"])
    """Study configs, each checked on its own."""
    profile: str = "profiles/slurm"
    """The profile to submit with (as `snakemake --profile` takes it); none: no profile."""
    directory: str | None = None
    """Working directory to dry-run in (default: an empty one, so the whole study counts)."""
    snakemake_args: list[str] = field(default_factory=list, metadata={"remainder": True})
    """After --: further snakemake arguments."""

    def run(self):
        from ilscaling.scalecheck import main

        extra = self.snakemake_args[1:] if self.snakemake_args[:1] == ["--"] else self.snakemake_args
        main(self.configfile, None if self.profile == "none" else self.profile, self.directory,
             extra)


@dataclass(kw_only=True)
class Fit(Job):
    """isoFLOP profiles and power laws of every game of a results file (spec: fit.FitConfig)."""

    results: str
    """results.nc"""
    out_nc: str
    """fits.nc"""
    summary: str
    """summary.md"""

    def run(self):
        from ilscaling.fit import FitConfig, write_fits

        write_fits(self.results, self.out_nc, self.summary, FitConfig(**self.values()))


# The commands, as `ilscaling <name>` runs them (cli.py builds the parser from this table).
COMMANDS = {
    "make-expert": MakeExpert, "make-dataset": MakeDataset, "train-bc": TrainBC, "train-bc-batched": TrainBCBatched,
    "evaluate": Evaluate, "gather": Gather, "fit": Fit, "plot": Plot, "ingest-published": IngestPublished,
    "forecast": Forecast, "train-forecast": TrainForecast, "forecast-verdict": ForecastVerdict,
    "forecast-report": ForecastReport, "headline-laws": HeadlineLaws, "headline-forecast": HeadlineForecast,
    "check-config": CheckConfig, "propose-grid": ProposeGrid, "scale-check": ScaleCheck,
}
