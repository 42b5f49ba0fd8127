import pytest
import torch

from ilscaling.flops import budget_label, measured_forward_flops
from ilscaling.models.atari import WidthCNN


@pytest.mark.parametrize("width", [1, 3, 8, 34, 117])
@pytest.mark.parametrize("num_actions", [4, 18])
def test_analytic_flops_match_flop_counter(width, num_actions):
    model = WidthCNN(width, num_actions)
    batch = 3
    measured = measured_forward_flops(model, torch.zeros(batch, 4, 84, 84, dtype=torch.uint8)) / batch
    assert model.forward_flops() == pytest.approx(measured, rel=0.01)
    assert model.train_flops_per_sample() == 3 * model.forward_flops()


def test_parameter_count_spans_the_papers_range():
    assert 500 < WidthCNN(1, 18).num_params() < 3_000
    assert 4e6 < WidthCNN(266, 18).num_params() < 6e6


def test_budget_labels_are_compact():
    assert [budget_label(b) for b in (1e10, 2e10, 5e11, 2.5e12, 1e18)] == ["1e10", "2e10", "5e11", "2.5e12", "1e18"]
    assert float(budget_label(2.5e12)) == 2.5e12


def test_width_must_be_positive():
    with pytest.raises(ValueError, match="width"):
        WidthCNN(0, 4)
