"""The paper's headline experiment: forecast the compute-optimal agent at a budget C*, train it, verify it.

1. `plan_forecast`: fits.nc already holds every game's forecast at its C* (the fit rule passes the
   same C* that the forecast stage trains at; see `ilscaling.config.forecast_budget`): N*, D*, the
   minimum held-out loss and the maximum return, each with its interval, by the raw, vertex
   (isoFLOP) and parametric methods. The plan picks the buildable width whose parameter count is
   nearest N* of the chosen method (in log), and the samples D = C* / f(width), f the width's
   training FLOPs per sample, so that the run spends exactly C*. With the training data's size
   and bc.max_epochs, an N* too small for the data (D above max_epochs passes over them) gives
   way to the narrowest width within the bound: the data-constrained optimum (Muennighoff et al.
   2023: with data limited, compute goes to parameters), noted in the plan and the verdict.
2. The agent is trained by the sweep's trainer (`train.train_bc` with budgets [C*]) and evaluated by
   `evaluate.evaluate_checkpoint` with more games (rules in workflow/rules/forecast.smk).
3. `forecast_verdict`: per method, the measured loss and return against the predicted value and its
   interval: inside or not, and the relative error. The loss compared is the metric the fits fitted
   for the game (fits.nc `loss_metric`: cross entropy or KL, recorded in the plan), measured by the
   same evaluation. It is checked against both L_min laws, the pure power law (`loss`) and the
   saturating E + A C^b (`loss_saturating`, raw and vertex methods), and the verdict says which of
   the two cross-validated better on the sweep. `verdict_markdown` writes every game's verdict,
   with published reference numbers beside it, labelled as not produced by this run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from ilscaling.flops import budget_label, epochs_for_budget
from ilscaling.io import atomic_path, open_netcdf, read_json, write_json
from ilscaling.fit import (FLOOR_METHODS, LOSS_METRIC_TEXT, LOSS_METRICS, METHODS, FitConfig,
                               fitted_loss_metric, floor_comparison, law_fit)

QUANTITIES = {"loss": "l_min", "return": "r_max"}  # verdict quantity -> forecast target of fits.nc
INTERVALS = {  # what each method's interval is (fits.nc's `forecast` attribute)
    ("raw", "loss"): "prediction interval of the raw-optimum power law",
    ("raw", "return"): "prediction interval of the raw-optimum power law",
    ("vertex", "loss"): "prediction interval of the isoFLOP power law",
    ("vertex", "return"): "prediction interval of the isoFLOP power law",
    ("parametric", "loss"): "bootstrap of L(N, D) with resampled residuals",
    ("parametric", "return"): "return-vs-loss prediction band over the loss interval",
    ("raw", "loss_saturating"): "bootstrap of the raw-optimum E + A C^b law with a resampled residual",
    ("vertex", "loss_saturating"): "bootstrap of the isoFLOP E + A C^b law with a resampled residual",
}
# The saturating law's loss forecast is checked as its own quantity, so "loss" keeps meaning the pure law.
SATURATING = "loss_saturating"
QUANTITY_LABELS = {"loss": "loss", "return": "return", SATURATING: "loss (E + A C^b)"}


def parse_sizes(items: list[str]) -> dict[int, tuple[int, float]]:
    """{width: (params, train FLOPs per sample)} from "width:params:flops" items (the CLI's --sizes)."""
    sizes = {}
    for item in items:
        try:
            width, params, flops = item.split(":")
            sizes[int(width)] = (int(params), float(flops))
        except ValueError:
            raise ValueError(f"size {item!r} is not width:params:train_flops_per_sample") from None
    if not sizes:
        raise ValueError("no buildable sizes given")
    return dict(sorted(sizes.items()))


def format_sizes(sizes: dict[int, tuple[int, float]]) -> str:
    """The inverse of `parse_sizes`, space-separated (for a rule's shell command)."""
    return " ".join(f"{w}:{p}:{f:.10g}" for w, (p, f) in sorted(sizes.items()))


def nearest_width(n_star: float, sizes: dict[int, tuple[int, float]]) -> int:
    """The width whose parameter count is nearest `n_star` in log (the smaller width on a tie)."""
    if not (np.isfinite(n_star) and n_star > 0):
        raise ValueError(f"N* must be a positive number, got {n_star}")
    return min(sorted(sizes), key=lambda w: abs(math.log(sizes[w][0]) - math.log(n_star)))


def samples_for_budget(budget: float, flops_per_sample: float) -> float:
    """D = C / f: the samples a run of `flops_per_sample` training FLOPs each needs to spend `budget`."""
    if not (budget > 0 and flops_per_sample > 0):
        raise ValueError(f"budget and FLOPs per sample must be positive, got {budget}, {flops_per_sample}")
    return budget / flops_per_sample


def train_frames_of(card: dict) -> int:
    """The training frames a data card counts: an Atari demonstrations card (`train.frames`) or the
    NetHack dataset's card (`train_frames`)."""
    if "train_frames" in card:
        return int(card["train_frames"])
    return int(card["train"]["frames"])


def within_data(width: int, budget: float, sizes: dict[int, tuple[int, float]], train_frames: float,
                max_epochs: float) -> tuple[int, float]:
    """`width`, or where C* would show it its data more than `max_epochs` times the narrowest width
    that stays within; with the epochs it will train. Raises where no width does."""
    def epochs(w):
        return epochs_for_budget(budget, sizes[w][1], train_frames)

    if epochs(width) <= max_epochs:
        return width, epochs(width)
    fitting = [w for w in sorted(sizes, key=lambda w: sizes[w][0]) if epochs(w) <= max_epochs]
    if not fitting:
        raise ValueError(f"at C* = {budget_label(budget)} FLOPs every width would see its {train_frames:,.0f} training "
                         f"frames more than max_epochs = {max_epochs:g} times: record more data, or lower C*")
    return fitting[0], epochs(fitting[0])


def _triple(row: xr.DataArray) -> dict[str, float | None]:
    values = {bound: float(row.sel(bound=bound)) for bound in ("value", "lo", "hi")}
    return {k: (v if np.isfinite(v) else None) for k, v in values.items()}


def game_predictions(fits: xr.Dataset, game: str) -> dict[str, dict]:
    """Every method's forecast of one game at its C*: N*, D*, loss (pure law), return and, for the raw and
    vertex methods, loss by the saturating law E + A C^b (`loss_saturating`), each {value, lo, hi}."""
    out = {}
    for method in METHODS:
        row = fits["forecast"].sel({"game": game, "method": method})
        out[method] = {"n_opt": _triple(row.sel(target="n_opt")), "d_opt": _triple(row.sel(target="d_opt")),
                       "loss": _triple(row.sel(target="l_min")), "return": _triple(row.sel(target="r_max"))}
        if method in FLOOR_METHODS:
            out[method][SATURATING] = _triple(fits["floor_forecast"].sel(game=game, floor_method=method))
    return out


def loss_forms(fits: xr.Dataset, game: str) -> dict[str, dict]:
    """Per method, which L_min law (pure or saturating) cross-validates better, and why."""
    return {method: dict(zip(("better", "why"), floor_comparison(fits, game, method))) for method in FLOOR_METHODS}


def parametric_at(fits: xr.Dataset, game: str, params: float, samples: float) -> dict[str, float | None]:
    """The parametric surface's loss at the run actually trained (N, D), and the return the return-vs-loss
    law gives at that loss (point values; the bootstrap resamples are not stored in fits.nc)."""
    values = fits["parametric"].sel(game=game, bound="value")
    coef = {str(k): float(values.sel(pparam=k)) for k in values["pparam"].values}
    if not all(np.isfinite(v) for v in coef.values()):
        return {"loss": None, "return": None}
    loss = coef["E"] + coef["A"] / params ** coef["alpha"] + coef["B"] / samples ** coef["beta"]
    rvl = law_fit(fits, game, "return_vs_loss")
    shift = float(fits["return_shift"].sel(game=game))
    value = float(rvl.predict(1.0 / loss)) - shift if rvl is not None else None
    return {"loss": loss, "return": value}


def plan_forecast(fits: xr.Dataset, game: str, budget: float, sizes: dict[int, tuple[int, float]],
                  method: str = "vertex", train_frames: float | None = None, max_epochs: float | None = None) -> dict:
    """The forecast agent of one game: width, samples, and every method's predictions at C* = `budget`.

    `method` picks N* (and so the width); when its N* is not available (law not fitted) the other of
    vertex/parametric is used and the plan says so. With `train_frames` and `max_epochs`, the width
    is held within the data (`within_data`).
    """
    if game not in set(map(str, fits["game"].values)):
        raise ValueError(f"game {game!r} is not in the fits file")
    fitted_budget = float(fits["forecast_budget"].sel(game=game))
    if not math.isclose(fitted_budget, budget, rel_tol=1e-9):
        raise ValueError(f"{game}: the fits forecast at C* = {budget_label(fitted_budget)} FLOPs, but the forecast "
                         f"stage trains at {budget_label(budget)}; refit with this C* (forecast.budget_factor / "
                         "forecast.budgets are the one source of both)")
    predictions = game_predictions(fits, game)
    order = [method] + [m for m in ("vertex", "parametric") if m != method]
    used = next((m for m in order if predictions[m]["n_opt"]["value"] is not None), None)
    if used is None:
        raise ValueError(f"{game}: no method has a compute-optimal N* at {budget_label(budget)} FLOPs "
                         "(no N_opt law and no parametric fit)")
    n_star = predictions[used]["n_opt"]["value"]
    nearest = nearest_width(n_star, sizes)
    width, epochs = nearest, None
    if train_frames is not None and max_epochs is not None:
        width, epochs = within_data(nearest, budget, sizes, train_frames, max_epochs)
    params, flops_per_sample = sizes[width]
    samples = samples_for_budget(budget, flops_per_sample)
    smallest, largest = min(p for p, _ in sizes.values()), max(p for p, _ in sizes.values())
    notes = []
    if used != method:
        notes.append(f"{method} N* not available; the width follows the {used} N*")
    if not smallest <= n_star <= largest:
        notes.append(f"N* = {n_star:.3g} lies outside the buildable sizes ({smallest:,} .. {largest:,} parameters): "
                     "the nearest end was taken")
    if width != nearest:
        notes.append(f"width {nearest} (nearest N*) would see its {train_frames:,.0f} training frames "
                     f"{epochs_for_budget(budget, sizes[nearest][1], train_frames):.1f} times, more than max_epochs = "
                     f"{max_epochs:g}: width {width} is the narrowest within the data (the data-constrained optimum)")
    confidence = FitConfig.from_attrs(fits.attrs).confidence
    return {
        "game": game, "budget": budget, "budget_label": budget_label(budget), "method": method,
        "loss_metric": fitted_loss_metric(fits, game),
        "width_method": used, "n_star": n_star, "width": width, "params": params,
        "train_flops_per_sample": flops_per_sample, "samples": samples, "train_frames": train_frames,
        "epochs": epochs, "max_epochs": max_epochs, "nearest_width": nearest,
        "log10_params_over_n_star": math.log10(params / n_star), "notes": notes,
        "confidence": confidence, "predictions": predictions, "loss_forms": loss_forms(fits, game),
        "parametric_at_width": parametric_at(fits, game, params, samples),
        "sizes": {str(w): [p, f] for w, (p, f) in sizes.items()},
    }


def write_forecast(fits_nc: str | Path, game: str, budget: float, sizes: dict[int, tuple[int, float]],
                   out: str | Path, method: str = "vertex", data_card: str | Path | None = None,
                   max_epochs: float | None = None, log=print) -> dict:
    """Plan the forecast agent (`plan_forecast`) and write it; `data_card` (the game's data card)
    gives the training frames that `max_epochs` bounds."""
    train_frames = train_frames_of(read_json(data_card, "data card")) if data_card is not None else None
    with open_netcdf(fits_nc, "fits") as fits:
        plan = plan_forecast(fits.load(), game, budget, sizes, method, train_frames, max_epochs)
    write_json(plan, out)
    log(f"{game} (loss: {LOSS_METRIC_TEXT[plan['loss_metric']]}): C* = {budget_label(budget)} FLOPs, "
        f"{plan['width_method']} N* = {plan['n_star']:.4g} -> width "
        f"{plan['width']} ({plan['params']:,} params), D = {plan['samples']:.4g} samples"
        + "".join(f"; {note}" for note in plan["notes"]))
    return plan


def bc_args_from_forecast(plan: dict, **values):
    """The BCArgs of the forecast run: the plan's game, width and budget; everything else as given."""
    from ilscaling.train import BCArgs

    return BCArgs(game=plan["game"], width=int(plan["width"]), budgets=[float(plan["budget"])], **values)


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------

def check_prediction(measured: float, predicted: dict) -> dict:
    """One measured value against {value, lo, hi}: inside the interval (None without one), relative error."""
    value, lo, hi = predicted.get("value"), predicted.get("lo"), predicted.get("hi")
    has_interval = lo is not None and hi is not None
    return {
        "predicted": value, "lo": lo, "hi": hi, "measured": measured,
        "inside": bool(lo <= measured <= hi) if has_interval else None,
        "relative_error": (measured - value) / abs(value) if value not in (None, 0) else None,
    }


def forecast_verdict(plan: dict, evaluation: dict) -> dict:
    """Measured loss and return of the forecast agent against every method's prediction."""
    if evaluation["game"] != plan["game"] or int(evaluation["width"]) != int(plan["width"]):
        raise ValueError(f"evaluation of {evaluation['game']} w{evaluation['width']} does not belong to the "
                         f"forecast of {plan['game']} w{plan['width']}")
    metric = plan["loss_metric"]
    if LOSS_METRICS[metric] not in evaluation:
        raise ValueError(f"the forecast of {plan['game']} predicts the {LOSS_METRIC_TEXT[metric]}, but its evaluation "
                         f"has no {LOSS_METRICS[metric]!r} (evaluated before the KL was measured?)")
    measured = {"loss": float(evaluation[LOSS_METRICS[metric]]), "return": float(evaluation["return"])}
    checks = []
    measured_values = dict(measured)
    measured_values[SATURATING] = measured["loss"]
    for method in METHODS:
        for quantity in (*QUANTITIES, SATURATING):
            if quantity == SATURATING and method not in FLOOR_METHODS:
                continue  # the saturating loss law runs through per-budget optima: raw and vertex only
            predicted = plan["predictions"][method][quantity]
            if predicted["value"] is None:
                continue
            checks.append({"method": method, "quantity": quantity, "interval": INTERVALS[(method, quantity)],
                           **check_prediction(measured_values[quantity], predicted)})
    return {
        "game": plan["game"], "budget": plan["budget"], "width": plan["width"], "params": plan["params"],
        "n_star": plan["n_star"], "width_method": plan["width_method"], "samples_planned": plan["samples"],
        "confidence": plan["confidence"], "notes": plan["notes"], "loss_metric": metric,
        "measured": {**measured, "cross_entropy": float(evaluation["loss"]),
                     "kl": float(evaluation["kl"]) if "kl" in evaluation else None, "return_sem": evaluation.get("return_sem"),
                     "episodes": len(evaluation.get("episode_returns", [])), "flops": evaluation["flops"],
                     "samples": evaluation["samples"], "epochs": evaluation.get("epochs"),
                     "heldout_frames": evaluation.get("heldout_frames"),
                     "episodes_truncated": evaluation.get("episodes_truncated")},
        "parametric_at_width": plan["parametric_at_width"],
        "loss_forms": plan["loss_forms"],
        "checks": checks,
    }


def write_verdict(forecast_json: str | Path, evaluation_json: str | Path, fits_nc: str | Path, out: str | Path,
                  figure_dir: str | Path, log=print) -> dict:
    """verdict.json and the forecast figure (PNG, PDF) of one game."""
    from ilscaling.plots import plot_forecast

    verdict = forecast_verdict(read_json(forecast_json, "forecast"), read_json(evaluation_json, "evaluation"))
    with open_netcdf(fits_nc, "fits") as fits:
        plot_forecast(fits.load(), verdict, Path(figure_dir))
    write_json(verdict, out)
    for check in verdict["checks"]:
        log(f"{verdict['game']} {check['method']} {check['quantity']}: predicted {_num(check['predicted'])} "
            f"[{_num(check['lo'])}, {_num(check['hi'])}], measured {_num(check['measured'])}, "
            f"{_inside_text(check['inside'])}")
    return verdict


def _num(value, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _inside_text(inside) -> str:
    return "no interval" if inside is None else ("inside" if inside else "**outside**")


def _metric_text(verdict: dict) -> str:
    return LOSS_METRIC_TEXT[verdict["loss_metric"]]


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _game_section(verdict: dict) -> list[str]:
    level = f"{100 * verdict['confidence']:g}%"
    m = verdict["measured"]
    sem = f" ± {m['return_sem']:.3g} (s.e.)" if m.get("return_sem") is not None and np.isfinite(m["return_sem"]) else ""
    lines = [f"## {verdict['game']}", "",
             f"C* = {budget_label(verdict['budget'])} FLOPs. {verdict['width_method']} N* = {verdict['n_star']:.4g} "
             f"parameters -> width {verdict['width']} ({verdict['params']:,} parameters), trained for "
             f"{m['samples']:,} samples ({m['flops']:.4g} FLOPs"
             + (f", {m['epochs']:.2f} epochs" if m.get("epochs") is not None else "") + ").",
             f"Loss compared: {_metric_text(verdict)}. Measured: held-out loss {m['loss']:.4f}"
             + (f" over {m['heldout_frames']:,} frames" if m.get("heldout_frames") else "")
             + f"; return {m['return']:.4g}{sem} over {m['episodes']} games"
             + (f" ({m['episodes_truncated']} cut by the step limit)" if m.get("episodes_truncated") else "") + ".", ""]
    lines += [f"- {note}" for note in verdict["notes"]] + ([""] if verdict["notes"] else [])
    lines += [f"| method | quantity | predicted | {level} interval | measured | in interval | relative error | interval |",
              "|---|---|---|---|---|---|---|---|"]
    for c in verdict["checks"]:
        bounded = c["lo"] is not None and c["hi"] is not None  # a one-sided or missing interval shows as –
        interval = f"[{_num(c['lo'])}, {_num(c['hi'])}]" if bounded else "–"
        degenerate = " (zero-width interval: the law passes through its points)" if (
            bounded and math.isclose(c["lo"], c["hi"], rel_tol=1e-9, abs_tol=1e-12)) else ""
        quantity = QUANTITY_LABELS.get(c["quantity"], c["quantity"])
        lines.append(f"| {c['method']} | {quantity} | {_num(c['predicted'])} | {interval} | {_num(c['measured'])} "
                     f"| {_inside_text(c['inside'])}{degenerate} | {_percent(c['relative_error'])} | {c['interval']} |")
    forms = verdict["loss_forms"]
    if forms:
        lines += ["", "Which L_min law to trust (one-step-ahead cross-validation over the sweep's budgets):"]
        lines += [f"- {method}: {form['why']}" for method, form in forms.items()]
    at_width = verdict["parametric_at_width"]
    if at_width["loss"] is not None:
        lines += ["", f"The parametric surface at the run actually trained (N = {verdict['params']:,}, "
                      f"D = {verdict['samples_planned']:.4g}): loss {_num(at_width['loss'])}, return "
                      f"{_num(at_width['return'])} (point values)."]
    return lines + [""]


VERDICT_COLUMNS = ("game", "C*", "width", "loss", "predicted loss [interval]", "measured loss", "predicted return [interval]",
                   "measured return")


def _closing_row(verdict: dict, method: str = "vertex") -> str:
    """One game in the summary table: predicted [interval] and measured (in or out) loss and return."""
    return "| " + " | ".join(verdict_cells(verdict, method)) + " |"


def verdict_cells(verdict: dict, method: str = "vertex") -> list[str]:
    """Game, C*, width, then predicted [interval] and measured (in or out, relative error) loss and return."""
    checks = {c["quantity"]: c for c in verdict["checks"] if c["method"] == method}
    cells = []
    for quantity in QUANTITIES:
        c = checks.get(quantity)
        measured = verdict["measured"][quantity]
        if c is None:
            cells += ["not fitted", _num(measured)]
            continue
        interval = f" [{_num(c['lo'])}, {_num(c['hi'])}]" if c["lo"] is not None else ""
        cells += [f"{_num(c['predicted'])}{interval}", f"{_num(measured)} ({_inside_text(c['inside'])}, "
                                                       f"{_percent(c['relative_error'])})"]
    return [verdict["game"], budget_label(verdict["budget"]), f"w{verdict['width']}", _metric_text(verdict), *cells]


def verdict_markdown(verdicts: list[dict], references: list[dict]) -> str:
    """Every game's verdict, then the published reference numbers (labelled as not produced by this run)."""
    lines = ["# Forecast verdicts", "",
             "Each game's compute-optimal agent at the forecast budget C*, predicted from the sweep's fits, "
             "trained for exactly C* FLOPs and measured with the sweep's loss and return protocol (more games).", "",
             "Predicted (isoFLOP/vertex method) vs measured:", "",
             "| " + " | ".join(VERDICT_COLUMNS) + " |", "|---" * len(VERDICT_COLUMNS) + "|"]
    lines += [_closing_row(v) for v in verdicts] + [""]
    for verdict in verdicts:
        lines += _game_section(verdict)
    lines += ["## Published reference numbers (not produced by this run)", ""]
    games = {v["game"] for v in verdicts}
    shown = [r for r in references if r["game"] in games]
    if shown:
        lines += ["These numbers come from the sources named; this run did not produce them, and they were "
                  "measured on other data, models and scales than this study's. *Unchecked*: quoted from a "
                  "secondary source, not read in the original.", "",
                  "| game | what | quantity | value | source | checked |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['game']} | {r['label']} | {r['quantity']} | {r['value']:g} | {r['source']} | "
                  f"{'yes' if r.get('checked', True) else '*unchecked*'} |" for r in shown]
    else:
        lines.append("None configured (forecast.references).")
    return "\n".join(lines) + "\n"


def write_verdict_report(verdict_paths: list[str | Path], out: str | Path, references: list[dict]) -> str:
    verdicts = [read_json(path, "verdict") for path in verdict_paths]
    text = verdict_markdown(verdicts, references)
    with atomic_path(out, suffix=".md") as tmp:
        tmp.write_text(text)
    return text
