"""`aevb.loop`: the steps of an epoch: non-finite losses and gradients, checkpoint ticks, and the detector's steps."""

import pytest
import torch

import aevb


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_nonfinite_gradient_under_a_finite_loss_stops_or_is_skipped_before_the_parameters_move():
    from aevb.errors import DivergedError
    from aevb.loop import Fitting, _nonfinite, run_epoch

    loss, big = torch.tensor(3.0), torch.full((4, 4), 1e30)  # finite, though its L2 norm overflows
    grads = [torch.zeros(3), big]
    params = [torch.zeros_like(t).requires_grad_() for t in grads]
    for p, gr in zip(params, grads):
        p.grad = gr
    assert _nonfinite(loss, params) is None
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert _nonfinite(torch.tensor(bad), params) == "loss"
    big[0, 0], big[1, 1] = float("inf"), -float("inf")  # their sum is NaN; a sum cannot cancel them away
    assert _nonfinite(loss, params) == "gradient"
    big[0, 0], big[1, 1] = 1e30, float("nan")
    assert _nonfinite(loss, params) == "gradient"

    x = torch.bernoulli(torch.full((64, 16), 0.4), generator=torch.Generator().manual_seed(0))
    for nonfinite in ("stop", "skip"):
        torch.manual_seed(0)
        model = aevb.VAE(aevb.ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        weight = model.decoder.net[-1].weight
        weight.register_hook(lambda gr: torch.where(torch.arange(gr.numel()).view_as(gr) == 5, float("nan"), gr))
        before = [p.detach().clone() for p in model.parameters()]
        config = aevb.TrainConfig(batch_size=32, binarize="none", nonfinite=nonfinite)
        if nonfinite == "stop":
            with pytest.raises(DivergedError, match="at step 1 of epoch 1: the gradient is NaN or inf"):
                run_epoch(Fitting.of(model, opt, torch.Generator().manual_seed(0), config), x, config)
        else:
            pos = run_epoch(Fitting.of(model, opt, torch.Generator().manual_seed(0), config), x, config)
            assert (pos.skipped, pos.counted, pos.steps) == (2, 0, 2)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_epoch_yields_when_a_checkpoint_is_due_and_saves_nothing_itself():
    from aevb.loop import Fitting, Position, epoch_steps

    x = torch.bernoulli(torch.full((100, 16), 0.4), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,)))
    g = torch.Generator().manual_seed(0)
    by_count = aevb.TrainConfig(batch_size=10, binarize="none", checkpoint_every=3)
    fitting = Fitting.of(model, torch.optim.Adam(model.parameters()), g, by_count)
    ticks = list(epoch_steps(fitting, x, by_count, Position.start(100, g, x.device), step0=1))
    assert [t.done for t in ticks] == list(range(10, 101, 10))
    # steps 2, 5, 8 of the epoch are steps 3, 6, 9 of the run; none at the epoch's end (it has its own)
    assert [i + 1 for i, t in enumerate(ticks) if t.checkpoint] == [2, 5, 8]
    assert all(t.batch_sum is not None and t.batch_sum.shape == () for t in ticks)
    by_clock = aevb.TrainConfig(batch_size=10, binarize="none", checkpoint_minutes=5)
    ticks = list(epoch_steps(fitting, x, by_clock, Position.start(100, g, x.device), deadline=0.0))
    assert [t.checkpoint for t in ticks] == [True] + [False] * 9  # a deadline passed; then the clock restarts
    assert not any(t.checkpoint for t in epoch_steps(fitting, x, by_clock, Position.start(100, g, x.device)))


def test_the_loop_takes_the_anomaly_detectors_former_steps_bit_for_bit():
    """The detector's own loop before it used aevb.loop: plain Adam, one generator, eps drawn after encoding."""
    from aevb.loop import Fitting, run_epoch

    x = torch.randn(70, 5, generator=torch.Generator().manual_seed(1))
    config = aevb.TrainConfig(batch_size=16, binarize="none")
    cfg = aevb.ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), likelihood="gaussian-learned")

    def fitted(new: bool) -> dict:
        torch.manual_seed(0)
        model = aevb.VAE(cfg)
        opt, g = torch.optim.Adam(model.parameters(), lr=1e-2), torch.Generator().manual_seed(0)
        fitting = Fitting.of(model, opt, g, config)
        for epoch in (1, 2, 3):
            if new:
                run_epoch(fitting, x, config, epoch=epoch)
                continue
            perm = torch.randperm(x.shape[0], generator=g)
            for i in range(0, x.shape[0], 16):
                loss = -aevb.elbo(model, x[perm[i : i + 16]], 1, "analytic", g).elbo.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return _params(model)

    _assert_same(fitted(True), fitted(False))
