"""`ilscaling <command>`: the entry points the Snakemake rules call, one per stage."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from pathlib import Path


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, exclude=()) -> None:
    """One --flag per dataclass field (lists take several values); defaults from the dataclass."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        hint = hints[field.name]
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if typing.get_origin(hint) is list:
            parser.add_argument(flag, type=typing.get_args(hint)[0], nargs="+", required=required)
        elif hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)   # X | None
            kind = typing.get_args(hint)[0] if optional else hint
            parser.add_argument(flag, type=kind, required=required,
                                default=None if required else field.default)


def dataclass_from_args(cls, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    return cls(**values)


def job_values(args) -> dict:
    """A job's spec and speed (ilscaling.jobs), merged; --num-threads, where given, is the job's threads."""
    import json

    values = {**json.loads(args.spec), **json.loads(args.speed)}
    if getattr(args, "num_threads", None) is not None:
        values["num_threads"] = args.num_threads
    return values


def cmd_make_expert(args):
    from ilscaling.families import family_of

    family_of(args.game).make_expert(args.game, job_values(args), Path(args.out_dir))


def cmd_make_dataset(args):
    from ilscaling.families import family_of

    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    family_of(args.game).make_dataset(args.game, job_values(args), Path(args.source), Path(args.out_dir))


def cmd_train_bc(args):
    from ilscaling.train import BCArgs, train_bc

    train_bc(BCArgs(**job_values(args)), args.train, args.out_dir, args.work_dir)


def cmd_train_bc_batched(args):
    import json

    from ilscaling.train import BCArgs
    from ilscaling.train_batched import Member, train_batched

    shared = job_values(args)
    vectorize = shared.pop("vectorize", "auto")
    members = [Member(BCArgs(**shared, **{k: v for k, v in m.items() if k not in ("train", "out_dir", "work_dir")}),
                      Path(m["train"]), Path(m["out_dir"]), Path(m["work_dir"])) for m in json.loads(args.members)]
    train_batched(members, args.work_dir, vectorize=vectorize)


def cmd_evaluate(args):
    from ilscaling.evaluate import EvalArgs, evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, args.heldout, args.out, EvalArgs(**job_values(args)))


def cmd_gather(args):
    from ilscaling.evaluate import gather_results

    gather_results(args.evals, args.cards, args.out_nc, args.out_csv)


def cmd_fit(args):
    from ilscaling.scaling import FitConfig, write_fits

    write_fits(args.results, args.out_nc, args.summary, dataclass_from_args(FitConfig, args))


def cmd_ingest_published(args):
    from ilscaling.published import read_published, write_results

    dataset = read_published(args.path)
    write_results(dataset, args.out_nc, args.out_csv)
    print(f"{args.path}: {dataset.sizes['game']} games ({', '.join(map(str, dataset['game'].values))}), "
          f"{int(dataset['loss'].count())} loss and {int(dataset['return'].count())} return values")


def cmd_plot(args):
    from ilscaling.plots import plot_all, plot_game

    if args.game is None:
        plot_all(args.results, args.fits, args.out_dir)
        return
    from ilscaling.io import open_netcdf

    with open_netcdf(args.results, "results") as results, open_netcdf(args.fits, "fits") as fits:
        plot_game(results.load(), fits.load(), args.game, Path(args.out_dir))


def cmd_forecast(args):
    from ilscaling.forecast import parse_sizes, write_forecast

    write_forecast(args.fits, args.game, args.budget, parse_sizes(args.sizes), args.out, method=args.method,
                   data_card=args.data_card, max_epochs=args.max_epochs)


def cmd_train_forecast(args):
    from ilscaling.forecast import bc_args_from_forecast
    from ilscaling.io import read_json
    from ilscaling.train import TooManyEpochs, train_bc

    plan = read_json(args.forecast, "forecast")
    values = job_values(args)
    if values.pop("game") != plan["game"]:
        raise SystemExit(f"{args.forecast} plans a {plan['game']} agent, but the job's spec is of another game")
    bc_args = bc_args_from_forecast(plan, **values)
    print(f"{plan['game']}: forecast agent, width {bc_args.width}, {plan['samples']:.4g} samples for "
          f"C* = {plan['budget']:.4g} FLOPs")
    try:
        train_bc(bc_args, args.train, args.out_dir, args.work_dir)
    except TooManyEpochs as err:
        raise SystemExit(f"forecast agent: {err}. The width follows the fits; raise the training data, or lower "
                         "C* (forecast.budget_factor / forecast.budgets)") from None


def cmd_forecast_verdict(args):
    from ilscaling.forecast import write_verdict

    write_verdict(args.forecast, args.evaluation, args.fits, args.out, args.figure_dir)


def cmd_forecast_report(args):
    import json

    from ilscaling.forecast import write_verdict_report

    print(write_verdict_report(args.verdicts, args.out, json.loads(args.references)))


def cmd_headline_laws(args):
    from ilscaling.frontpage import write_laws_rst

    print(write_laws_rst(args.fits, args.out))


def cmd_headline_forecast(args):
    from ilscaling.frontpage import write_verdicts_rst

    print(write_verdicts_rst(args.verdicts, args.out))


def cmd_propose_grid(args):
    import yaml

    from ilscaling.config import load_config, proposed_grid
    from ilscaling.families import family_of, games_of

    config = load_config(args.configfile)
    for game in games_of(config):
        section = family_of(game).section
        sweep = config[section]["sweep"]   # an explicit grid in the file is ignored
        grid = proposed_grid(config, game, sweep["budgets"], sweep["sizes_per_budget"])
        print(f"# {game}: proposed {section}.sweep.grid (budget -> widths)")
        print(yaml.safe_dump({"grid": grid}, default_flow_style=None, sort_keys=False))


def cmd_scale_check(args):
    from ilscaling.scalecheck import main

    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    main(args.configfile, None if args.workflow_profile == "none" else args.workflow_profile, args.directory, extra)


def cmd_check_config(args):
    """Read, merge (in order, as `snakemake --configfile A B`) and validate study configs as the
    workflow does, naming the file and line of a YAML error and the key of a bad value. Snakemake
    reads --configfile itself before the workflow runs, and says less: a missing file is a
    traceback, a YAML error gives no file or line."""
    from ilscaling.config import ConfigError, merged, missing_data, read_config_file, sweep_runs, validate_config
    from ilscaling.families import games_of

    study = {}
    for configfile in args.configfile:
        try:
            study = merged(study, read_config_file(configfile))
        except ConfigError as err:  # (it names the file)
            raise SystemExit(str(err)) from None
    try:
        config = validate_config(study)
    except ConfigError as err:
        raise SystemExit(f"{' + '.join(args.configfile)}: {err}") from None
    missing = missing_data(config)
    if missing:
        raise SystemExit(f"{' + '.join(args.configfile)}: {missing}")
    runs = {game: len(sweep_runs(config, game)) for game in games_of(config)}
    print(f"{' + '.join(args.configfile)}: valid; BC runs per game: "
          + ", ".join(f"{game} {n}" for game, n in runs.items()))


def build_parser() -> argparse.ArgumentParser:
    from ilscaling.scaling import FitConfig

    parser = argparse.ArgumentParser(prog="ilscaling", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def job_parser(name, help):
        """A job's command: its spec and speed as JSON (ilscaling.jobs: the rules pass them)."""
        p = commands.add_parser(name, help=help)
        p.add_argument("--spec", required=True, help="what the job computes (JSON)")
        p.add_argument("--speed", default="{}", help="how fast it runs or what it keeps on the side (JSON)")
        return p

    p = job_parser("make-expert", "the source of a game's expert play (Atari: a PPO expert; NetHack: the bot's games)")
    p.add_argument("--game", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_make_expert)

    p = job_parser("make-dataset", "a game's demonstrations, their train/held-out split and card.json")
    p.add_argument("--game", required=True)
    p.add_argument("--source", required=True, help="the expert stage's folder, or the game's data on disk (NLD-AA)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_make_dataset)

    p = job_parser("train-bc", "one BC run, checkpointed at its FLOP budgets (spec: train.BCArgs)")
    p.add_argument("--num-threads", type=int, help="CPU threads for PyTorch (the job's threads)")
    p.add_argument("--train", required=True, help="the game's training data (families/: data_files)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--work-dir", required=True, help="resume state and unfinished checkpoints, outside --out-dir")
    p.set_defaults(func=cmd_train_bc)

    p = job_parser("train-bc-batched", "Atari BC runs of one width in one process (stacked parameters)")
    p.add_argument("--num-threads", type=int, help="CPU threads for PyTorch (the job's threads)")
    p.add_argument("--members", required=True,
                   help='JSON list of each run\'s own spec (game, seed, num_actions, width, budgets) and its '
                        '"train", "out_dir" and "work_dir", as train-bc would take them')
    p.add_argument("--work-dir", required=True, help="the group's resume state")
    p.set_defaults(func=cmd_train_bc_batched)

    p = job_parser("evaluate", "held-out loss and sampled-policy return of one checkpoint (spec: evaluate.EvalArgs)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--heldout", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("gather", help="all evaluations into one NetCDF (and CSV)")
    p.add_argument("--evals", nargs="+", required=True)
    p.add_argument("--cards", nargs="+", required=True)
    p.add_argument("--out-nc", required=True)
    p.add_argument("--out-csv", required=True)
    p.set_defaults(func=cmd_gather)

    p = commands.add_parser("fit", help="isoFLOP profiles and power laws")
    p.add_argument("--results", required=True)
    p.add_argument("--out-nc", required=True)
    p.add_argument("--summary", required=True)
    add_dataclass_arguments(p, FitConfig)
    p.set_defaults(func=cmd_fit)

    p = commands.add_parser("ingest-published", help="published results (authors' layout or tidy CSV) into results.nc")
    p.add_argument("--path", required=True, help="experiment_data, its atari/ or nethack/ folder, or a .csv table")
    p.add_argument("--out-nc", required=True)
    p.add_argument("--out-csv", default=None)
    p.set_defaults(func=cmd_ingest_published)

    p = commands.add_parser("plot", help="figures from the results and fits files (no refitting)")
    p.add_argument("--results", required=True)
    p.add_argument("--fits", required=True)
    p.add_argument("--game", help="one game, into --out-dir; without it every game, into <out-dir>/<game>/")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_plot)

    p = commands.add_parser("forecast", help="the compute-optimal agent of one game at C*, from the fits")
    p.add_argument("--fits", required=True)
    p.add_argument("--game", required=True)
    p.add_argument("--budget", type=float, required=True, help="C*, FLOPs (the fits must forecast at it)")
    p.add_argument("--sizes", nargs="+", required=True, help="buildable widths as width:params:train_flops_per_sample")
    p.add_argument("--method", choices=("vertex", "parametric"), default="vertex", help="whose N* picks the width")
    p.add_argument("--data-card", help="the game's data card: its training frames bound the width with --max-epochs")
    p.add_argument("--max-epochs", type=float, help="passes over the training data the agent may make (bc.max_epochs)")
    p.add_argument("--out", required=True, help="forecast.json")
    p.set_defaults(func=cmd_forecast)

    p = job_parser("train-forecast", "train the forecast agent (width and budget from forecast.json)")
    p.add_argument("--forecast", required=True, help="forecast.json of `ilscaling forecast`")
    p.add_argument("--num-threads", type=int, help="CPU threads for PyTorch (the job's threads)")
    p.add_argument("--train", required=True, help="the game's training data (families/: data_files)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--work-dir", required=True, help="resume state and unfinished checkpoints, outside --out-dir")
    p.set_defaults(func=cmd_train_forecast)

    p = commands.add_parser("forecast-verdict", help="measured vs predicted loss and return of the forecast agent")
    p.add_argument("--forecast", required=True)
    p.add_argument("--evaluation", required=True, help="the forecast agent's evaluation (.json)")
    p.add_argument("--fits", required=True)
    p.add_argument("--out", required=True, help="verdict.json")
    p.add_argument("--figure-dir", required=True, help="folder of forecast.png and forecast.pdf")
    p.set_defaults(func=cmd_forecast_verdict)

    p = commands.add_parser("forecast-report", help="every game's verdict and the reference numbers, as markdown")
    p.add_argument("--verdicts", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--references", default="[]", help="JSON list of {game, quantity, value, source, label}")
    p.set_defaults(func=cmd_forecast_report)

    p = commands.add_parser("headline-laws", help="the report front page's table of fitted laws (reStructuredText)")
    p.add_argument("--fits", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_headline_laws)

    p = commands.add_parser("headline-forecast", help="the report front page's table of forecast verdicts (reStructuredText)")
    p.add_argument("--verdicts", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_headline_forecast)

    p = commands.add_parser("check-config", help="validate study config files as the workflow would, before "
                                                 "Snakemake reads them (the file, line and key of any error)")
    p.add_argument("configfile", nargs="+")
    p.set_defaults(func=cmd_check_config)

    p = commands.add_parser("propose-grid", help="print a sweep grid around the expected optimum")
    p.add_argument("--configfile", default="config.yaml")
    p.set_defaults(func=cmd_propose_grid)

    p = commands.add_parser("scale-check", help="jobs and GPU-hours a configuration asks for (snakemake -n), "
                                                "before anything is submitted")
    p.add_argument("--configfile", nargs="+", default=["configs/paper-atari.yaml", "configs/paper-nethack.yaml"])
    p.add_argument("--workflow-profile", default="profiles/slurm", help="the profile to submit with; none: no profile")
    p.add_argument("--directory", default=None,
                   help="working directory to dry-run in (default: an empty one, so the whole study counts)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="after --: further snakemake arguments")
    p.set_defaults(func=cmd_scale_check)
    return parser


def _log_file() -> Path | None:
    """The file this process's output goes to, when a job redirected it to its log (Linux)."""
    try:
        target = Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        return None
    return target if target.suffix == ".log" and target.is_file() else None


def _failed_name(log: Path) -> Path:
    """The next free <log>.failed-<k>."""
    k = 1 + sum(1 for _ in log.parent.glob(log.name + ".failed-*"))
    return log.with_name(f"{log.name}.failed-{k}")


class AttemptLog:
    """Keeps the log of every attempt of a job that did not succeed.

    Snakemake deletes a job's log before it runs the job again (`Job.remove_existing_output`), and
    the next attempt writes the log anew. At its start an attempt hard-links its log as
    <log>.attempt: the link keeps what the attempt wrote even when it is killed outright (SIGKILL,
    the out-of-memory killer, a Slurm time limit past its grace), since deleting the log leaves the
    file under the link's name. A success removes the link; a failure renames it <log>.failed-<k>,
    and a link still there at the start of the next attempt is a killed attempt's and is renamed
    the same way. Where the file system has no hard links, a failure copies the log instead.
    """

    def __init__(self, log: Path):
        self.log = log
        self.link = log.with_name(log.name + ".attempt")
        if self.link.exists() and not self.link.samefile(log):
            self.link.rename(_failed_name(log))  # an attempt that was killed before it could say so
        try:
            if not self.link.exists():
                os.link(log, self.link)
        except OSError:
            self.link = None

    def succeeded(self) -> None:
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def failed(self) -> Path:
        kept = _failed_name(self.log)
        if self.link is not None and self.link.exists():
            self.link.rename(kept)
        else:
            import shutil

            shutil.copyfile(self.log, kept)
        return kept


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # a job's log grows line by line, not in blocks at the end
    log = _log_file()
    attempt = AttemptLog(log) if log is not None else None
    try:
        args.func(args)
    except BaseException as err:
        if attempt is None or (isinstance(err, SystemExit) and err.code in (None, 0)):
            if attempt is not None:
                attempt.succeeded()
            raise
        if not isinstance(err, SystemExit):  # (a SystemExit, e.g. a preempted trainer's, said why already)
            import traceback

            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"(this attempt's log is kept as {attempt.failed()})", file=sys.stderr, flush=True)
        raise SystemExit(err.code if isinstance(err, SystemExit) else 1) from None
    if attempt is not None:
        attempt.succeeded()


if __name__ == "__main__":
    sys.exit(main())
