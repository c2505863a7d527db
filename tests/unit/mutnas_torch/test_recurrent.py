"""Recurrent layers (LSTM, GRU, RNN) are absorb vertices: hidden size free, input follows.

Every test traces small models (hidden 8) on CPU; the sweep is parametrised, not Hypothesis.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import mutnas as mn
import mutnas_torch as mt
from mutnas.advanced import frozen_vertices

RNNS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}
T, N, F_IN, H = 5, 3, 4, 8


class Net(nn.Module):
    """Linear (or Embedding) -> RNN -> heads on the last step, on every step, on h_n."""

    def __init__(self, kind="LSTM", layers=1, bidirectional=False, batch_first=True, **kw):
        super().__init__()
        self.kind, self.batch_first = kind, batch_first
        self.embed = kw.pop("embed", False)
        self.pre = nn.Embedding(11, 6) if self.embed else nn.Linear(F_IN, 6)
        self.rnn = RNNS[kind](
            6, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **kw
        )
        width = (kw.get("proj_size") or H) * (2 if bidirectional else 1)
        self.last = nn.Linear(width, 3)
        self.steps = nn.Linear(width, 3)
        self.hidden = nn.Linear(kw.get("proj_size") or H, 3)

    def forward(self, x):
        if self.kind == "LSTM":
            out, (h, _c) = self.rnn(self.pre(x))
        else:
            out, h = self.rnn(self.pre(x))
        last = out[:, -1] if self.batch_first else out[-1]
        every = self.steps(out).mean(dim=1 if self.batch_first else 0)
        return self.last(last) + every + self.hidden(h[-1])


def example(batch_first=True, embed=False):
    shape = (N, T) if batch_first else (T, N)
    if embed:
        return torch.randint(0, 11, shape)
    return torch.randn(*shape, F_IN)


def rebuilt(m: nn.RNNBase) -> nn.RNNBase:
    """A fresh layer from the attributes alone: they must describe the weights."""
    options = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first)
    options["bidirectional"] = m.bidirectional
    if isinstance(m, nn.LSTM):
        options["proj_size"] = m.proj_size
    new = type(m)(m.input_size, m.hidden_size, **options)
    new.load_state_dict(m.state_dict())
    return new


SWEEP = [
    (kind, layers, bidirectional, batch_first, growth)
    for kind, (layers, bidirectional), batch_first, growth in itertools.product(
        RNNS, [(1, False), (2, True)], [True, False], ["exact", "net2net"]
    )
] + [("LSTM", 2, False, True, "trainable"), ("GRU", 1, True, False, "trainable")]


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "batch_first", "growth"), SWEEP)
def test_growth_keeps_outputs(kind, layers, bidirectional, batch_first, growth):
    torch.manual_seed(0)
    net = Net(kind, layers, bidirectional, batch_first).eval()
    x = example(batch_first)
    mm = mt.mutable(net, x, growth=growth, strict=True)
    before = mm(x)
    mm.resize("rnn", 3)
    mm.resize("pre", 2)
    rnn = mm.module.rnn
    assert (rnn.hidden_size, rnn.input_size) == (H + 3, 8)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    assert rnn.weight_hh_l0.shape == (gates * (H + 3), H + 3)
    if layers > 1:
        assert rnn.weight_ih_l1.shape[1] == (H + 3) * (2 if bidirectional else 1)
    torch.testing.assert_close(mm(x), before, rtol=1e-5, atol=1e-6)
    rebuilt(rnn)
    mm.verify()


@pytest.mark.parametrize("kind", RNNS)
def test_prune_by_l1_gives_sizes_and_runs(kind):
    torch.manual_seed(1)
    net = Net(kind, layers=2, bidirectional=True)
    x = example()
    mm = mt.mutable(net, x)
    with torch.no_grad():  # make units 0..3 the strongest: L1 must keep them
        for name, p in mm.module.rnn.named_parameters():
            if name.startswith("weight"):
                rows = p.view(-1, H, p.shape[-1])
                rows[:, 4:] *= 0.01
    kept = mm.module.rnn.weight_hh_l0.detach().view(-1, H, H)[:, :4, :4].clone()
    mm.prune(0.5)
    rnn = mm.module.rnn
    assert (rnn.hidden_size, rnn.input_size, mm.module.pre.out_features) == (4, 3, 3)
    assert mm.module.last.in_features == mm.module.steps.in_features == 8
    torch.testing.assert_close(rnn.weight_hh_l0.detach().view(-1, 4, 4), kept)
    assert mm(x).shape == (N, 3)
    rebuilt(rnn)
    mm.verify()


def test_input_follows_embedding_and_rnn_before():
    torch.manual_seed(2)
    net = Net("GRU", embed=True)
    x = example(embed=True)
    mm = mt.mutable(net, x, strict=True)
    before = mm(x)
    mm.resize("pre", 5)
    assert (mm.module.pre.embedding_dim, mm.module.rnn.input_size) == (11, 11)
    torch.testing.assert_close(mm(x), before, rtol=1e-5, atol=1e-6)

    stacked = nn.Sequential(nn.LSTM(4, 6, bidirectional=True), Pick(), nn.GRU(12, 5), Pick())
    x = torch.randn(T, N, 4)
    mm = mt.mutable(stacked, x)
    before = mm(x)
    mm.resize("0", 2)  # the GRU reads both directions: 2 x 8 inputs
    assert (mm.module.get_submodule("2").input_size, mm.module.get_submodule("0").hidden_size) == (
        16,
        8,
    )
    torch.testing.assert_close(mm(x), before, rtol=1e-5, atol=1e-6)


class Pick(nn.Module):
    def forward(self, pair):
        return pair[0]


def test_training_step_after_mutation():
    torch.manual_seed(3)
    mm = mt.mutable(Net("LSTM", layers=2, bidirectional=True), example())
    opt = torch.optim.Adam(mm.parameters(), lr=1e-2)
    mm.attach_optimizer(opt)
    x, target = example(), torch.randn(N, 3)

    def step():
        opt.zero_grad()
        loss = nn.functional.mse_loss(mm(x), target)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    mm.resize("rnn", 4)
    step()
    mm.prune(0.5)
    losses = [step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    rnn = mm.module.rnn
    assert opt.state[rnn.weight_hh_l1]["exp_avg"].shape == rnn.weight_hh_l1.shape
    assert rnn.weight_hh_l1.grad is not None  # the live parameters took part in backward


def test_strict_mode_accepts_recurrent_layers():
    mm = mt.mutable(Net("RNN", nonlinearity="relu"), example(), strict=True)
    assert "rnn" in mm.layers()
    assert mm.graph["rnn"].nout == H
    assert not mm.pinned or all("rnn" not in reason for reason in mm.pinned.values())


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_projection_grows_the_projected_size():
    torch.manual_seed(4)
    net = Net("LSTM", layers=2, bidirectional=True, proj_size=5)
    x = example()
    for growth in ("exact", "net2net"):
        mm = mt.mutable(net, x, growth=growth)
        before = mm(x)
        assert mm.graph["rnn"].nout == 5
        mm.resize("rnn", 2)
        rnn = mm.module.rnn
        assert (rnn.proj_size, rnn.hidden_size) == (7, H)
        assert rnn.weight_ih_l1.shape == (4 * H, 14)
        torch.testing.assert_close(mm(x), before, rtol=1e-5, atol=1e-6)
        rebuilt(rnn)
    mm.prune(0.5)
    assert mm.module.rnn.proj_size == 4
    mm.verify()


class WithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, H, batch_first=True)
        self.fc = nn.Linear(H, 2)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(0), 8)
        out, _h = self.rnn(x, h0)
        return self.fc(out[:, -1])


class SlicedHidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, H)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        _out, (h, _c) = self.rnn(x)
        return self.fc(h[-1][:, :4])  # reads some units only: cannot be followed


def test_uses_that_cannot_be_followed_pin_the_hidden_size():
    for net, x in ((WithState(), example()), (SlicedHidden(), example(batch_first=False))):
        mm = mt.mutable(net, x)
        assert "rnn" in frozen_vertices(mm.graph)
        with pytest.raises(mn.SizeError):
            mm.resize("rnn", 1)
        assert mm(x).shape == (N, 2)


class Reshaped(nn.Module):
    """h_n of both directions laid side by side: [2, N, H] -> [N, 2H]; c_n read too."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, H, bidirectional=True)
        self.fc = nn.Linear(2 * H, 2)
        self.cell = nn.Linear(H, 2)

    def forward(self, x):
        _out, (h, c) = self.rnn(x)
        return self.fc(h.permute(1, 0, 2).reshape(x.shape[1], -1)) + self.cell(c[0])


def test_reshaped_hidden_state_is_followed():
    torch.manual_seed(5)
    x = example(batch_first=False)
    mm = mt.mutable(Reshaped(), x)
    before = mm(x)
    mm.resize("rnn", 3)
    assert (mm.module.fc.in_features, mm.module.cell.in_features) == (22, 11)
    torch.testing.assert_close(mm(x), before, rtol=1e-5, atol=1e-5)


def test_unbatched_input():
    rnn = nn.Sequential(nn.Linear(4, 6), nn.LSTM(6, H), Pick(), nn.Linear(H, 2))
    x = torch.randn(T, 4)
    mm = mt.mutable(rnn, x, strict=True)
    before = mm(x)
    mm.resize({"1": 2, "0": -1})
    assert (mm.module.get_submodule("1").input_size, mm.module.get_submodule("3").in_features) == (
        5,
        10,
    )
    assert mm(x).shape == before.shape
