import pytest
import torch
import torch.nn.functional as F

from ilscaling.flops import budget_label, conv2d_flops, measured_forward_flops, measured_step_flops
from ilscaling.models.atari import WidthCNN


@pytest.mark.parametrize("width", [1, 3, 8, 34, 117])
@pytest.mark.parametrize("num_actions", [4, 18])
def test_analytic_flops_match_flop_counter(width, num_actions):
    model = WidthCNN(width, num_actions)
    batch = 3
    measured = measured_forward_flops(model, torch.zeros(batch, 4, 84, 84, dtype=torch.uint8)) / batch
    assert model.forward_flops() == pytest.approx(measured, rel=0.01)
    assert model.train_flops_per_sample() == 3 * model.forward_flops()


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_training_step_does_3x_forward_less_the_first_convs_input_gradient(channels_last):
    """What the benchmarks count as done: the frames need no gradient, so the first conv's backward
    is 1x its forward; every other layer's is 2x (the budgets' convention counts 3x throughout)."""
    model = WidthCNN(8, 6, channels_last=channels_last)
    frames, labels = torch.zeros(4, 4, 84, 84, dtype=torch.uint8), torch.arange(4)
    optimizer = torch.optim.Adam(model.parameters())

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(frames), labels).backward()
        optimizer.step()

    first = conv2d_flops(model.layers[0], (20, 20))
    assert measured_step_flops(step) == 4 * (model.train_flops_per_sample() - first)


def test_parameter_count_spans_the_papers_range():
    assert 500 < WidthCNN(1, 18).num_params() < 3_000
    assert 4e6 < WidthCNN(266, 18).num_params() < 6e6


def test_budget_labels_are_compact():
    assert [budget_label(b) for b in (1e10, 2e10, 5e11, 2.5e12, 1e18)] == ["1e10", "2e10", "5e11", "2.5e12", "1e18"]
    assert float(budget_label(2.5e12)) == 2.5e12


def test_width_must_be_positive():
    with pytest.raises(ValueError, match="width"):
        WidthCNN(0, 4)
