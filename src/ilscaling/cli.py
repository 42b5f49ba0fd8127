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


def cmd_train_expert(args):
    from ilscaling.io import provenance, save_torch, write_json
    from ilscaling.ppo import PPOArgs, train_expert

    expert = train_expert(args.game, dataclass_from_args(PPOArgs, args))
    expert["provenance"] = provenance()
    save_torch(expert, args.out)
    write_json({key: value for key, value in expert.items() if key != "state_dict"}, args.summary)


def cmd_record_demos(args):
    from ilscaling.data.atari import Demonstrations, write_demonstrations
    from ilscaling.evaluate import heldout_loss
    from ilscaling.games.atari import record_demonstrations
    from ilscaling.io import load_torch
    from ilscaling.ppo import load_expert_policy

    import torch

    torch.set_num_threads(args.threads)
    expert = load_torch(args.expert, "expert checkpoint")
    game = expert["config"]["game"]
    policy = load_expert_policy(expert)
    episodes = record_demonstrations(game, policy, args.frames, seed=args.seed,
                                     num_envs=args.num_envs, max_episode_steps=args.max_episode_steps,
                                     num_threads=args.threads, greedy=args.greedy, log=print)
    # The expert network's own losses on its demonstrations. Cross entropy: the held-out loss a
    # perfect imitator would reach (about the expert's policy entropy when it samples; near 0 when
    # greedy). KL to the policy played: 0 up to rounding when it samples (the network is that policy);
    # equal to the cross entropy when greedy (the played policy is the one-hot, not the softmax).
    all_frames = Demonstrations.from_episodes(episodes.frames, episodes.actions, episodes.rewards,
                                              range(len(episodes.actions)), episodes.policies)
    expert_loss = heldout_loss(policy, all_frames)
    card = write_demonstrations(episodes, args.out_dir, args.heldout_fraction, args.seed, game,
                                greedy=args.greedy, expert_greedy_eval_return=expert["eval_mean_return"],
                                episodes_truncated=int(episodes.truncated.sum()),
                                expert_cross_entropy=expert_loss.cross_entropy, expert_kl=expert_loss.kl)
    print(f"{game}: {card['episodes']} episodes, {card['frames']} frames, {card['bytes'] / 1e6:.1f} MB, "
          f"expert mean return {card['expert_mean_return']:.1f}, expert cross entropy "
          f"{expert_loss.cross_entropy:.3f}, expert KL to the policy played {expert_loss.kl:.3g}")


def cmd_record_nethack(args):
    from ilscaling.games.nethack_bot import record_bot_games

    record_bot_games(args.out_dir, games=args.games, processes=args.processes,
                     max_episode_steps=args.max_episode_steps, character=args.character, seed=args.seed,
                     env_kind=args.env)


def cmd_train_bc(args):
    from ilscaling.train import BCArgs, train_bc

    train_bc(dataclass_from_args(BCArgs, args), args.train, args.out_dir, args.work_dir)


BATCHED_MEMBER_FIELDS = ("game", "seed", "num_actions", "budgets")  # per member, from --members


def cmd_train_bc_batched(args):
    import json

    from ilscaling.train import BCArgs
    from ilscaling.train_batched import Member, train_batched

    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(BCArgs)
              if f.name not in BATCHED_MEMBER_FIELDS and getattr(args, f.name) is not None}
    members = [Member(BCArgs(**shared, game=m["game"], seed=m["seed"], num_actions=m["num_actions"],
                             budgets=[float(b) for b in m["budgets"]]), Path(m["train"]), Path(m["out_dir"]),
                      Path(m["work_dir"])) for m in json.loads(args.members)]
    train_batched(members, args.work_dir, vectorize=args.vectorize)


def cmd_evaluate(args):
    from ilscaling.evaluate import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, args.heldout, args.out, episodes=args.episodes, seed=args.seed,
                        max_episode_steps=args.max_episode_steps, num_threads=args.threads,
                        processes=args.processes, envs=args.envs, ttyrec_dir=args.ttyrec_dir,
                        device=args.device, nethack_env=args.env)


def cmd_build_nethack_dataset(args):
    from ilscaling.data.nethack import build_database, dataset_card, make_split
    from ilscaling.io import read_json

    bot_card = read_json(args.bot_card, "bot data card") if args.bot_card else None
    games = build_database(args.root, args.db, args.name)
    print(f"{args.root}: {games} games indexed into {args.db} as {args.name!r}")
    split = make_split(args.db, args.name, args.split, heldout_fraction=args.heldout_fraction, seed=args.seed,
                       where=args.filter, expected_games=bot_card["games"] if bot_card else None,
                       min_train_games=args.batch_size)
    dataset_card(split, bot_card, args.card)


def cmd_gather(args):
    from ilscaling.evaluate import gather_results

    gather_results(args.evals, args.cards, args.out_nc, args.out_csv)


def cmd_fit(args):
    from ilscaling.fit import FitConfig, write_fits

    write_fits(args.results, args.out_nc, args.summary, dataclass_from_args(FitConfig, args))


def cmd_ingest_published(args):
    from ilscaling.published import read_published
    from ilscaling.results_file import write_results

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


FORECAST_RUN_FIELDS = ("game", "width", "budgets")  # from the forecast file, not from flags


def cmd_train_forecast(args):
    from ilscaling.forecast import bc_args_from_forecast
    from ilscaling.io import read_json
    from ilscaling.train import BCArgs, TooManyEpochs, train_bc

    plan = read_json(args.forecast, "forecast")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BCArgs)
              if f.name not in FORECAST_RUN_FIELDS and getattr(args, f.name) is not None}
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

    from ilscaling.config import family, games_of, load_config, proposed_grid

    config = load_config(args.configfile)
    for game in games_of(config):
        sweep = config[family(game)]["sweep"]   # an explicit grid in the file is ignored
        grid = proposed_grid(config, game, sweep["budgets"], sweep["sizes_per_budget"])
        print(f"# {game}: proposed {family(game)}.sweep.grid (budget -> widths)")
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
    from ilscaling.config import ConfigError, games_of, merged, missing_data, read_config_file, sweep_runs, validate_config

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
    from ilscaling.ppo import PPOArgs
    from ilscaling.fit import FitConfig
    from ilscaling.train import BCArgs

    parser = argparse.ArgumentParser(prog="ilscaling", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train-expert", help="train a PPO expert on one Atari game")
    p.add_argument("--game", required=True)
    add_dataclass_arguments(p, PPOArgs)
    p.add_argument("--out", required=True, help="expert checkpoint (.pt)")
    p.add_argument("--summary", required=True, help="learning curve and evaluation (.json)")
    p.set_defaults(func=cmd_train_expert)

    p = commands.add_parser("record-demos", help="record greedy expert play and split it")
    p.add_argument("--expert", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--heldout-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--max-episode-steps", type=int, default=27000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=True,
                   help="argmax actions (the paper); --no-greedy samples from the expert")
    p.set_defaults(func=cmd_record_demos)

    p = commands.add_parser("record-nethack", help="record the heuristic NetHack bot's games as NLE ttyrecs")
    p.add_argument("--out-dir", required=True, help="<out-dir>/<worker>/ ttyrecs and xlogfiles, and card.json")
    p.add_argument("--games", type=int, required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--max-episode-steps", type=int, default=100_000)
    p.add_argument("--character", default="mon-hum-neu-mal")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the bot's choices, and in the seeded environment every game")
    p.add_argument("--env", choices=("seeded", "challenge"), default="seeded",
                   help="seeded: games fixed by the seed, on a pinned clock; challenge: NetHackChallenge-v0 as is")
    p.set_defaults(func=cmd_record_nethack)

    p = commands.add_parser("train-bc", help="one BC run, checkpointed at its FLOP budgets")
    add_dataclass_arguments(p, BCArgs)
    p.add_argument("--train", required=True, help="train.npz of the Atari demonstrations, or the NetHack split.json")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--work-dir", required=True, help="resume state and unfinished checkpoints, outside --out-dir")
    p.set_defaults(func=cmd_train_bc)

    p = commands.add_parser("train-bc-batched", help="Atari BC runs of one width in one process (stacked parameters)")
    add_dataclass_arguments(p, BCArgs, exclude=BATCHED_MEMBER_FIELDS)
    p.add_argument("--members", required=True,
                   help='JSON list of {"game", "seed", "num_actions", "budgets" (FLOPs, as numbers or labels), '
                        '"train", "out_dir", "work_dir"}: each run as train-bc would take it')
    p.add_argument("--work-dir", required=True, help="the group's resume state")
    p.add_argument("--vectorize", choices=("auto", "vmap", "loop"), default="auto",
                   help="vmap: one grouped forward; loop: one member after another; auto: vmap on a GPU")
    p.set_defaults(func=cmd_train_bc_batched)

    p = commands.add_parser("evaluate", help="held-out loss and sampled-policy return of one checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--heldout", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int, default=27000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--processes", type=int, default=1, help="NetHack: worker processes stepping the games")
    p.add_argument("--envs", type=int, default=None,
                   help="games played at once (default: all; Atari: up to 32), each playing a fixed quota")
    p.add_argument("--ttyrec-dir", default=None, help="NetHack: keep the games' ttyrecs here")
    p.add_argument("--env", choices=("seeded", "challenge"), default="seeded",
                   help="NetHack: seeded (every checkpoint plays the same seeded games) or challenge (NetHackChallenge-v0)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu or cuda[:i] for the network; cuda without CUDA fails")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("build-nethack-dataset", help="index NLE ttyrecs with nle.dataset and split whole games")
    p.add_argument("--root", required=True, help="ttyrec directory holding */*.xlogfile (the bot's, or NLD-AA's)")
    p.add_argument("--name", required=True, help="dataset name inside the database")
    p.add_argument("--db", required=True, help="the NLD sqlite database to create")
    p.add_argument("--split", required=True, help="split file to write (.json)")
    p.add_argument("--card", required=True, help="data card to write (.json)")
    p.add_argument("--filter", default=None, help="SQL condition on the games table, e.g. \"role='Mon' AND race='Hum'\"")
    p.add_argument("--heldout-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1, help="sequences per BC batch: the split must leave as many train games")
    p.add_argument("--bot-card", default=None, help="the bot's card: its game count is checked against the database")
    p.set_defaults(func=cmd_build_nethack_dataset)

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

    p = commands.add_parser("train-forecast", help="train the forecast agent (width and budget from forecast.json)")
    p.add_argument("--forecast", required=True, help="forecast.json of `ilscaling forecast`")
    add_dataclass_arguments(p, BCArgs, exclude=FORECAST_RUN_FIELDS)
    p.add_argument("--train", required=True, help="train.npz of the Atari demonstrations, or the NetHack split.json")
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
