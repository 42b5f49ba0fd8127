import io

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ilscaling.models.nethack import NetHackNet, model_size, size_table
from ilscaling.models.nethack_config import ENCODERS, SCALED_REFERENCE_WIDTH, NetHackModelConfig, scaled_encoders
from ilscaling.models.nethack_encoders import crop_around_cursor


def make_batch(batch, steps, seed=0, done_prob=0.0, num_actions=121):
    g = torch.Generator().manual_seed(seed)
    chars = torch.randint(32, 128, (batch, steps, 24, 80), generator=g, dtype=torch.uint8)
    colors = torch.randint(0, 16, (batch, steps, 24, 80), generator=g, dtype=torch.int8)
    cursor = torch.stack([torch.randint(0, 24, (batch, steps), generator=g),
                          torch.randint(0, 80, (batch, steps), generator=g)], dim=-1).to(torch.uint8)
    prev_action = torch.randint(0, num_actions, (batch, steps), generator=g)
    done = torch.rand(batch, steps, generator=g) < done_prob
    return [chars, colors, cursor, prev_action, done]


def sliced(inputs, start, stop):
    return [x[:, start:stop] for x in inputs]


def model(hidden=32, core="lstm", variant="reduced", unroll=8, **kw):
    torch.manual_seed(0)
    return NetHackNet(NetHackModelConfig(hidden=hidden, core=core, variant=variant, unroll=unroll, **kw)).eval()


def random_state(net, batch, seed=1):
    """A non-trivial carried state: the state after a random warm-up segment."""
    with torch.no_grad():
        _, state = net(*make_batch(batch, net.config.unroll, seed=seed), net.initial_state(batch))
    return state


CASES = [(core, variant, h) for core in ("lstm", "transformer") for variant in ("full", "reduced")
         for h in (32, 64, 128)] + [(core, "scaled", h) for core in ("lstm", "transformer") for h in (32, 128)]
SCALED_WIDTHS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)  # the widths the scaled variant is meant for


@pytest.mark.parametrize("core,variant,hidden", CASES)
def test_analytic_flops_match_flop_counter(core, variant, hidden):
    net = model(hidden, core, variant, unroll=4)
    batch, steps = 2, 4  # the transformer's FLOPs per sample are those of a full `unroll` segment
    state = random_state(net, batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*make_batch(batch, steps), state)
    measured = counter.get_total_flops() / (batch * steps)
    # The message's one-hot x weight runs as an embedding-bag lookup, which FlopCounterMode does not
    # count; the analytic count charges it as the dense linear layer of the authors' model.
    assert net.forward_flops() - net.topline.lookup_flops() == pytest.approx(measured, rel=0.01)
    assert net.train_flops_per_sample() == 3 * net.forward_flops()


def test_full_variant_reproduces_the_papers_sizes():
    encoders = model(32, variant="full").encoder_flops()
    assert 36e6 < encoders < 38.5e6  # ~37M forward FLOPs per sample whatever h
    assert model(2048, variant="full").encoder_flops() < 1.35 * encoders  # only the encoders' h-wide heads grow
    assert model(128, variant="full").num_params() == pytest.approx(1.9e6, rel=0.15)
    assert model(1536, variant="full").num_params() == pytest.approx(29e6, rel=0.15)


def test_reduced_variant_is_at_least_five_times_cheaper():
    for hidden in (32, 256):
        full, reduced = model(hidden, variant="full"), model(hidden, variant="reduced")
        assert 5 * reduced.encoder_flops() < full.encoder_flops()
    assert ENCODERS["reduced"].res_blocks < ENCODERS["full"].res_blocks


def test_scaled_variant_is_the_reduced_one_at_the_reference_width():
    assert scaled_encoders(SCALED_REFERENCE_WIDTH) == ENCODERS["reduced"]
    scaled = model_size(NetHackModelConfig(hidden=SCALED_REFERENCE_WIDTH, variant="scaled"))
    assert scaled == model_size(NetHackModelConfig(hidden=SCALED_REFERENCE_WIDTH, variant="reduced"))
    assert scaled_encoders(512).screen_channels == (16, 32) and scaled_encoders(64).msg_hdim == 4
    assert scaled_encoders(16).crop_out == 1  # never below one channel


def test_scaled_training_flops_grow_with_the_parameters():
    """FLOPs per sample / 6N within 2x over the scaled widths (the reduced variant: 3x over 16..256)."""
    rows = size_table([NetHackModelConfig(hidden=h, variant="scaled", unroll=32) for h in SCALED_WIDTHS])
    ratios = [row["train_flops"] / row["six_n"] for row in rows]
    assert max(ratios) < 2 * min(ratios)
    assert 1.5 < min(ratios) and max(ratios) < 3.5
    assert [row["params"] for row in rows] == sorted(row["params"] for row in rows)
    # 16 -> 512 is 177x the parameters and 227x the FLOPs per sample
    assert rows[-1]["train_flops"] / rows[0]["train_flops"] > 0.5 * rows[-1]["params"] / rows[0]["params"] > 50
    reduced = [model_size(NetHackModelConfig(hidden=h, variant="reduced", unroll=32)) for h in (16, 256)]
    assert reduced[1][1] / reduced[0][1] < 1.5  # fixed encoders: 16x the width, 1.36x the FLOPs


@pytest.mark.parametrize("hidden", [16, 64])
def test_scaled_variant_trains_a_step(hidden):
    net = model(hidden, variant="scaled", unroll=4).train()
    inputs = make_batch(2, 4, done_prob=0.2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        logits, _ = net(*inputs, net.initial_state(2))
        loss = F.cross_entropy(logits.reshape(-1, 121), inputs[3].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_lstm_state_resets_at_done():
    net = model(core="lstm")
    inputs = make_batch(3, 8)
    inputs[4][:, 3] = True  # every row starts a new game at step 3
    with torch.no_grad():
        logits, _ = net(*inputs, random_state(net, 3))
        fresh, _ = net(*sliced(inputs, 3, 8), net.initial_state(3))
    torch.testing.assert_close(logits[:, 3:], fresh, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits[:, :3], net(*sliced(inputs, 0, 3), net.initial_state(3))[0])


@pytest.mark.parametrize("core", ["lstm", "transformer"])
def test_two_unrolls_with_the_carried_state_equal_one_long_unroll(core):
    # The transformer's memory holds `unroll` steps: from an empty memory, 4 + 4 steps fit its
    # window exactly (with a full memory the two runs would see different windows, by design).
    net = model(core=core, unroll=8 if core == "transformer" else 4)
    inputs = make_batch(2, 8, done_prob=0.2)
    with torch.no_grad():
        state = random_state(net, 2) if core == "lstm" else net.initial_state(2)
        whole, whole_state = net(*inputs, state)
        first, carried = net(*sliced(inputs, 0, 4), state)
        second, split_state = net(*sliced(inputs, 4, 8), carried)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-5)
    if core == "lstm":
        for a, b in zip(whole_state, split_state):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_transformer_streams_step_by_step_like_one_unroll():
    net = model(core="transformer", unroll=6)
    inputs = make_batch(2, 6, done_prob=0.2)
    with torch.no_grad():
        whole, _ = net(*inputs, net.initial_state(2))
        state, steps = net.initial_state(2), []
        for t in range(6):
            out, state = net(*sliced(inputs, t, t + 1), state)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-5)


def test_transformer_attends_neither_across_games_nor_to_the_future():
    net = model(core="transformer", unroll=8)
    inputs = make_batch(2, 8)
    inputs[4][0, 3] = True  # row 0: a new game starts at step 3
    other = make_batch(2, 8, seed=5)
    state = random_state(net, 2)
    with torch.no_grad():
        base, _ = net(*inputs, state)
        # Earlier game (and the memory before it) changed: row 0 from step 3 on is unchanged.
        earlier = [torch.cat([o[:, :3], x[:, 3:]], dim=1) for o, x in zip(other, inputs)]
        earlier[4] = inputs[4]
        changed, _ = net(*earlier, random_state(net, 2, seed=9))
        # The future changed: every output up to step 4 is unchanged.
        future = [torch.cat([x[:, :5], o[:, 5:]], dim=1) for x, o in zip(inputs, other)]
        future[4] = inputs[4]
        later, _ = net(*future, state)
    torch.testing.assert_close(changed[0, 3:], base[0, 3:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(changed[1], base[1])  # row 1 has no boundary: it does see the change
    torch.testing.assert_close(later[:, :5], base[:, :5], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(later[:, 5:], base[:, 5:])


def test_transformer_memory_is_dropped_at_done():
    net = model(core="transformer", unroll=4)
    inputs = make_batch(2, 4)
    inputs[4][:, 0] = True
    with torch.no_grad():
        carried, _ = net(*inputs, random_state(net, 2))
        fresh, _ = net(*inputs, net.initial_state(2))
    torch.testing.assert_close(carried, fresh, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("core", ["lstm", "transformer"])
def test_gradients_reach_every_parameter(core):
    net = model(core=core, unroll=4).train()
    inputs = make_batch(2, 4, done_prob=0.2)
    logits, _ = net(*inputs, net.initial_state(2))
    F.cross_entropy(logits.reshape(-1, 121), inputs[3].reshape(-1)).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("core", ["lstm", "transformer"])
def test_bfloat16_autocast_on_cpu(core):
    net = model(core=core, unroll=4)
    inputs = make_batch(2, 4, done_prob=0.2)
    state = net.initial_state(2)
    with torch.no_grad():
        reference, _ = net(*inputs, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, new_state = net(*inputs, state)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert (logits - reference).abs().max() < 0.1 * reference.abs().max() + 0.05
    assert [s.dtype for s in new_state] == [s.dtype for s in state]
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("core", ["lstm", "transformer"])
def test_state_is_batch_first_plain_tensors_that_survive_a_checkpoint(core):
    net = model(core=core, unroll=4)
    state = net.initial_state(3)
    assert isinstance(state, tuple) and all(isinstance(s, torch.Tensor) and s.shape[0] == 3 for s in state)
    _, new_state = net(*make_batch(3, 2), state)
    buffer = io.BytesIO()
    torch.save({"carry": tuple(s.detach() for s in new_state), "model": net.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    for a, b in zip(loaded["carry"], new_state):
        torch.testing.assert_close(a, b.detach())
    assert all(s.shape == t.shape for s, t in zip(new_state, state))


def test_crop_reads_the_window_around_the_cursor_and_pads_outside_the_map():
    grid = torch.arange(21 * 80).view(1, 21, 80).repeat(3, 1, 1) + 1
    cursor = torch.tensor([[5, 10], [1, 0], [0, 79]])  # screen rows: map row = row - 1
    crop = crop_around_cursor(grid, cursor)
    assert crop.shape == (3, 9, 9)
    assert crop[0, 4, 4] == grid[0, 4, 10] and crop[0, 0, 0] == grid[0, 0, 6]
    assert crop[1, 4, 4] == grid[1, 0, 0] and (crop[1, :4] == 0).all() and (crop[1, :, :4] == 0).all()
    assert (crop[2, :5] == 0).all() and crop[2, 5, 4] == grid[2, 0, 79]


def test_model_size_and_size_table():
    config = NetHackModelConfig(hidden=48, variant="reduced")
    params, train_flops = model_size(config)
    net = NetHackNet(config)
    assert (params, train_flops) == (net.num_params(), 3 * net.forward_flops())
    (row,) = size_table([config])
    assert row["params"] == params and row["six_n"] == 6 * params and row["forward_flops"] == net.forward_flops()
    assert 0.9 < row["encoder_flop_share"] < 1
    big, small = (model_size(NetHackModelConfig(hidden=h, core="transformer", variant="reduced")) for h in (64, 32))
    assert big[0] > small[0] and big[1] > small[1]


@pytest.mark.parametrize("kwargs", [dict(core="gru"), dict(variant="tiny"), dict(hidden=2),
                                    dict(core="transformer", hidden=30, transformer_heads=4)])
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        NetHackModelConfig(**{"hidden": 32, **kwargs})
