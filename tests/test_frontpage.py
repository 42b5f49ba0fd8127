"""The front page's tables of headline numbers: real fits and verdicts, rendered by docutils as the report does."""

import pytest
from docutils.core import publish_parts
from test_forecast import C_STAR, evaluation_of, sizes_around
from sweeps import pure_law_results

from ilscaling.forecast import forecast_verdict, plan_forecast
from ilscaling.frontpage import laws_rst, rst_text, verdicts_rst
from ilscaling.fit import FitConfig, fit_results


def html_of(text: str) -> str:
    """The html docutils makes of `text`; a warning (a malformed table, stray markup) fails."""
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["body"]


@pytest.fixture(scope="module")
def fits():
    return fit_results(pure_law_results(), FitConfig(bootstrap=50))


def test_the_laws_table_gives_each_exponent_with_its_interval_and_r2(fits):
    html = html_of(laws_rst(fits))
    for quantity in ("n_opt", "d_opt", "l_min", "return_vs_loss"):
        law = fits["law"].sel(game="Synth", quantity=quantity)
        lo, hi = float(law.sel(stat="slope_lo")), float(law.sel(stat="slope_hi"))
        assert f"<td>{float(law.sel(stat='slope')):.3f}</td>\n<td>[{lo:.3f}, {hi:.3f}]</td>" in html, quantity
    assert "95% confidence intervals" in html and "Held-out loss: Synth: cross entropy" in html
    assert "N_opt ∝ C^b" in html


def test_the_verdicts_table_gives_prediction_and_measurement(fits):
    plan = plan_forecast(fits, "Synth", C_STAR, sizes_around(0.3 * C_STAR**0.6))
    vertex = plan["predictions"]["vertex"]
    verdict = forecast_verdict(plan, evaluation_of(plan, 3 * vertex["loss"]["hi"], vertex["return"]["value"]))
    html = html_of(verdicts_rst([verdict]))
    assert "<td>Synth</td>\n<td>1e19</td>" in html
    assert f"{3 * vertex['loss']['hi']:.4g} (<strong>outside</strong>" in html
    assert "predicted loss [interval]" in html


def test_free_text_cannot_break_the_markup():
    assert html_of(rst_text("a *b* `c` d_ |e|")).count("<p>a *b* `c` d_ |e|</p>") == 1
