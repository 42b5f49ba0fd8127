"""The study's configuration: schema validation that names the offending key, and the sweep grid."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import yaml

from ilscaling.families import families, family_of, games_of
from ilscaling.sweep import model_sizes, sweep_grid, sweep_runs, training_frames_bound
from ilscaling.flops import budget_label, epochs_for_budget

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _key_path(path) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "<top level>"


def _fill_defaults(validator_class):
    """A validator that also writes schema defaults into the config (as snakemake.utils.validate)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = subschema["default"]
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _typed(text: str):
    """A text as the value it spells (an integer, a number, true/false, null, a list or a mapping),
    else the text itself."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _read_by_schema_types(config: dict, validator) -> None:
    """Texts where the schema declares another type, read as that type, in place.

    Snakemake hands a nested `--config` value over as texts ("resources={max_runtime: 2880}" gives
    {"max_runtime": "2880"}); a value the schema accepts as text (a budget label) stays text.
    """
    for _ in range(1000):  # each pass fixes at least one value, and a config has finitely many
        fixed = False
        for error in validator.iter_errors(config):
            if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
                continue
            value = _typed(error.instance)
            if isinstance(value, str):
                continue
            *parents, last = error.absolute_path
            target = config
            for part in parents:
                target = target[part]
            target[last] = value
            fixed = True
        if not fixed:
            return


# JSON Schema counts 2.0 as an integer; a width or a count of 2.0 would reach torch as a float.
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
_VALIDATOR = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)


def validate_config(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate (and fill defaults into) `config` in place; raise ConfigError naming every bad key.

    Texts are first read as the types the schema declares (a `--config` override's values)."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = _fill_defaults(_VALIDATOR)(schema)
    _read_by_schema_types(config, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = _key_path(error.absolute_path)
            if error.validator == "anyOf" and not error.absolute_path:  # the top level's: a game family
                lines.append("the config has no atari and no nethack section: a study needs at least one")
            elif error.validator == "additionalProperties" and "properties" in error.schema:
                allowed = error.schema["properties"]
                for extra in sorted(set(error.instance) - set(allowed)):
                    name = f"{key}.{extra}" if error.absolute_path else extra
                    lines.append(f"config key {name}: unknown key (allowed here: {', '.join(allowed)})")
            else:
                lines.append(f"config key {key}: {error.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_meaning(config)
    return config


def merged(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` merged in, nested dicts key by key (as Snakemake merges --config)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def read_config_file(configfile: str | Path) -> dict:
    """A config file's mapping; a missing file, a YAML error (with its line) or a file that is not
    a mapping is a ConfigError naming the file."""
    path = Path(configfile)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open() as stream:  # (so that the error names the file beside the line)
            content = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} holds {type(content).__name__}, not a mapping of config keys")
    return content


def load_config(configfile: str | Path, overrides: dict | None = None) -> dict:
    """A study config file (with `overrides` merged in) as the workflow sees it: validated, defaults filled in."""
    return validate_config(merged(read_config_file(configfile), overrides or {}))


def check_config_files(configfiles: list[str]) -> str:
    """Read, merge (in order, as `snakemake --configfile A B`) and validate study configs as the
    workflow does; what they hold, or a ConfigError naming the file and line of a YAML error, or
    the key of a bad value, or the data missing here. Snakemake reads --configfile itself before
    the workflow runs, and says less: a missing file is a traceback, a YAML error gives no line."""
    named = " + ".join(map(str, configfiles))
    study = {}
    for configfile in configfiles:
        study = merged(study, read_config_file(configfile))  # (its errors name the file)
    try:
        config = validate_config(study)
    except ConfigError as err:
        raise ConfigError(f"{named}: {err}") from None
    missing = missing_data(config)
    if missing:
        raise ConfigError(f"{named}: {missing}")
    runs = {game: len(sweep_runs(config, game)) for game in games_of(config)}
    return f"{named}: valid; BC runs per game: " + ", ".join(f"{game} {n}" for game, n in runs.items())


def missing_data(config: dict) -> str | None:
    """What data a study reads from this machine are not here, as a config error names them (None:
    all are). `validate_config` does not check it, as a config may be written for another machine;
    the workflow stops a run on it before any job, and a dry run plans without them."""
    missing = [family.missing_data(config) for family in families() if family.section in config]
    return next((message for message in missing if message), None)


def _check_meaning(config: dict) -> None:
    """Checks a schema cannot express: known games, a usable dataset, budgets and grids that make sense."""
    for family in families():
        if family.section in config:
            family.check_config(config)
            _check_sweep(config[family.section]["sweep"], f"{family.section}.sweep")
    _check_forecast(config)
    for game in games_of(config):
        _check_grid(config, game)
        _check_epochs(config, game)


def _check_grid(config: dict, game: str) -> None:
    """Every budget of the game's sweep is trained, by enough widths to enter the fits."""
    section = family_of(game).section
    key = f"{section}.sweep"
    grid = sweep_grid(config, game)
    missing = [budget_label(b) for b in config[section]["sweep"]["budgets"] if budget_label(b) not in grid]
    if missing:
        if "grid" in config[section]["sweep"]:
            raise ConfigError(f"config key {key}.grid: budgets {', '.join(missing)} of {key}.budgets have no widths")
        bc = config[section]["bc"]
        raise ConfigError(
            f"config key {key}.budgets: {game}: budgets {', '.join(missing)} buy no width of {key}.widths the "
            f"{config[section]['sweep']['min_steps']} gradient steps ({key}.min_steps) of "
            f"{family_of(game).samples_per_step(bc)} samples within {bc['max_epochs']:g} epochs of its data "
            f"({section}.bc.max_epochs): raise them, add smaller widths or record more data")
    needed = config["fit"]["min_sizes_per_budget"]
    few = {label: widths for label, widths in grid.items() if len(widths) < needed}
    if few:
        shown = "; ".join(f"{label}: {len(widths)} ({', '.join(map(str, widths))})" for label, widths in few.items())
        raise ConfigError(f"config key {key}{'.grid' if 'grid' in config[section]['sweep'] else '.budgets'}: "
                          f"{game}: fewer widths than fit.min_sizes_per_budget = {needed} at {shown}; such a budget "
                          "cannot enter the fits: give it more widths, or leave it out")


def _check_epochs(config: dict, game: str) -> None:
    """No run of the sweep, nor the forecast agent at any width, repeats its data more than bc.max_epochs."""
    bound = training_frames_bound(config, game)
    if bound is None:
        return
    frames, data_key = bound
    section = family_of(game).section
    limit = config[section]["bc"]["max_epochs"]
    sizes = model_sizes(config, game)
    over = [(run.width, budget_label(run.budgets[-1]), epochs_for_budget(run.budgets[-1], sizes[run.width][1], frames))
            for run in sweep_runs(config, game) if run.seed == config[section]["bc"]["seeds"][0]]
    over = [item for item in over if item[2] > limit]
    if over:
        shown = "; ".join(f"width {w} at {label}: {epochs:.1f}" for w, label, epochs in over)
        raise ConfigError(f"config key {section}.bc.max_epochs: {game}: runs would see their ~{frames:,.0f} training "
                          f"frames more than {limit:g} times ({shown}): raise {data_key}, or take those widths out "
                          f"of {section}.sweep.grid")
    if game in forecast_games(config):
        # The agent's width follows the fits; where N*'s width would repeat the data more than
        # max_epochs, the plan takes the narrowest width within it (forecast.within_data). So
        # the forecast can be trained if the widest width can.
        budget = forecast_budget(config, game)
        widest = max(sizes, key=lambda w: sizes[w][1])
        epochs = epochs_for_budget(budget, sizes[widest][1], frames)
        if epochs > limit:
            raise ConfigError(f"config key {section}.bc.max_epochs: {game}: the forecast agent at C* = "
                              f"{budget_label(budget)} would see its ~{frames:,.0f} training frames {epochs:.1f} "
                              f"times even at the largest width ({widest}), more than {limit:g}: raise {data_key}, "
                              "or lower the forecast budget")


def _check_forecast(config: dict) -> None:
    """One source of the forecast budget; per-game budgets and references name games of the study."""
    if config.get("fit", {}).get("forecast_budget") is not None:
        raise ConfigError("config key fit.forecast_budget: the forecast budget C* is set in the forecast section "
                          "(forecast.budget_factor, or forecast.budgets per game), which both the fit and the "
                          "forecast run read; remove fit.forecast_budget")
    section = config.get("forecast")
    if section is None:
        return
    games = games_of(config)
    budgets = {}
    for game, value in section["budgets"].items():
        if game not in games:
            raise ConfigError(f"config key forecast.budgets.{game}: not a game of this study ({', '.join(games)})")
        budgets[game] = parse_budget(value, f"forecast.budgets.{game}")
    section["budgets"] = budgets
    if section["episodes"] is not None:
        for family_name in (family.section for family in families()):
            if family_name in config and section["episodes"] < config[family_name]["evaluation"]["episodes"]:
                raise ConfigError(f"config key forecast.episodes: {section['episodes']} games, fewer than the sweep's "
                                  f"{family_name}.evaluation.episodes ({config[family_name]['evaluation']['episodes']}); "
                                  "the forecast agent is evaluated with at least as many")
    for i, game in enumerate(section["games"] or []):
        if game not in games:
            raise ConfigError(f"config key forecast.games[{i}]: {game!r} is not a game of this study ({', '.join(games)})")
    for i, reference in enumerate(section["references"]):
        if reference["game"] not in games:
            raise ConfigError(f"config key forecast.references[{i}].game: {reference['game']!r} is not a game of "
                              f"this study ({', '.join(games)})")


def _check_sweep(sweep: dict, key: str) -> None:
    sweep["budgets"] = sorted(parse_budget(b, f"{key}.budgets[{i}]") for i, b in enumerate(sweep["budgets"]))
    if "grid" in sweep:
        known = {budget_label(b) for b in sweep["budgets"]}
        grid = {}
        for label, widths in sweep["grid"].items():
            budget = parse_budget(label, f"{key}.grid.{label}")
            if budget_label(budget) not in known:
                raise ConfigError(f"config key {key}.grid.{label}: budget is not in {key}.budgets")
            unknown = sorted(set(widths) - set(sweep["widths"]))
            if unknown:
                raise ConfigError(f"config key {key}.grid.{label}: widths {unknown} are not in {key}.widths")
            grid[budget_label(budget)] = sorted(set(widths))
        sweep["grid"] = grid


def parse_budget(value, key: str) -> float:
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key}: {value!r} is not a number of FLOPs") from None
    if not math.isfinite(budget) or budget <= 0:
        raise ConfigError(f"config key {key}: budget must be positive, got {value!r}")
    return budget


def forecast_games(config: dict) -> list[str]:
    """The games whose compute-optimal agent is forecast and trained: forecast.games, else every game."""
    section = config.get("forecast", {})
    if not section.get("enabled"):
        return []
    return [game for game in games_of(config) if section.get("games") is None or game in section["games"]]


def forecast_budget(config: dict, game: str) -> float:
    """C* of a game's forecast: forecast.budgets[game], else budget_factor x its largest swept budget."""
    section = config["forecast"]
    if game in section["budgets"]:
        return float(section["budgets"][game])
    return section["budget_factor"] * max(float(b) for b in config[family_of(game).section]["sweep"]["budgets"])


def forecast_episodes(config: dict, game: str) -> int:
    """Evaluation games of the forecast agent: forecast.episodes, else 4x the sweep's."""
    return config["forecast"]["episodes"] or 4 * config[family_of(game).section]["evaluation"]["episodes"]
