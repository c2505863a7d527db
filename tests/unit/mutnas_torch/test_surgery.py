"""Weight surgery: module attributes, repr and state_dict follow the weights; growth is exact;
optimizer state follows the parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

import mutnas_torch as mt


# ---------------------------------------------------------------- helpers
def rebuilt(m: nn.Module) -> nn.Module | None:
    """A fresh module built from ``m``'s attributes alone (None for other module types)."""
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, nn.Linear):
        return nn.Linear(m.in_features, m.out_features, bias=bias)
    if isinstance(m, _ConvNd):
        options = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
        if isinstance(m, _ConvTransposeNd):
            options["output_padding"] = m.output_padding
        return type(m)(m.in_channels, m.out_channels, m.kernel_size, bias=bias, **options)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return type(m)(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.GroupNorm):
        return nn.GroupNorm(m.num_groups, m.num_channels, m.eps, m.affine)
    if isinstance(m, nn.LayerNorm):
        return nn.LayerNorm(m.normalized_shape, m.eps, m.elementwise_affine, bias=bias)
    if isinstance(m, nn.PReLU):
        return nn.PReLU(m.num_parameters)
    if isinstance(m, nn.Embedding):
        return nn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx)
    if isinstance(m, nn.MultiheadAttention):
        return nn.MultiheadAttention(
            m.embed_dim,
            m.num_heads,
            bias=m.in_proj_bias is not None,
            batch_first=m.batch_first,
            kdim=m.kdim,
            vdim=m.vdim,
        )
    return None


def assert_attributes_match_weights(model: nn.Module) -> int:
    """Every known layer describes its weights: attributes, repr and state_dict shapes.

    Returns the number of layers checked.
    """
    checked = 0
    for name, m in model.named_modules():
        fresh = rebuilt(m)
        if fresh is None or isinstance(m, nn.modules.linear.NonDynamicallyQuantizableLinear):
            continue
        mine = {k: tuple(v.shape) for k, v in m.state_dict().items() if v.dim() > 0}
        theirs = {k: tuple(v.shape) for k, v in fresh.state_dict().items() if v.dim() > 0}
        assert mine == theirs, f"{name}: state_dict {mine} but attributes say {theirs}"
        assert repr(m) == repr(fresh), f"{name}: repr {m!r} but weights say {fresh!r}"
        if isinstance(m, nn.MultiheadAttention):
            assert m.head_dim * m.num_heads == m.embed_dim, name
            assert m.out_proj.in_features == m.out_proj.out_features == m.embed_dim, name
        checked += 1
    return checked


# ---------------------------------------------------------------- attributes
def _conv_transpose():
    return nn.Sequential(nn.ConvTranspose2d(3, 6, 2, stride=2), nn.ReLU(), nn.Conv2d(6, 2, 1))


def _grouped():
    return nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1, groups=4), nn.Conv2d(12, 2, 1)
    )


def _depthwise():
    return nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 2, 1)
    )


def _norms():
    return nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.BatchNorm2d(8),
        nn.GroupNorm(2, 8),
        nn.PReLU(8),
        nn.Conv2d(8, 2, 1),
    )


def _layernorm():
    return nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 2))


IMAGE = torch.randn(2, 3, 5, 5)

CASES = {
    # name: (model factory, example input, vertex to resize, growth, shrink)
    "linear": (
        lambda: nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)),
        None,
        "0",
        3,
        -2,
    ),
    "conv": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 2, 1)), IMAGE, "0", 3, -2),
    "conv_transpose": (_conv_transpose, IMAGE, "0", 3, -2),
    "grouped": (_grouped, IMAGE, "2", 3, -3),
    "depthwise": (_depthwise, IMAGE, "0", 3, -2),
    "batchnorm_groupnorm_prelu": (_norms, IMAGE, "0", 2, -4),
    "layernorm": (_layernorm, None, "0", 3, -2),
}


@pytest.mark.parametrize("case", CASES)
def test_attributes_repr_and_state_dict_follow_the_weights(case):
    factory, x, vertex, grow, shrink = CASES[case]
    x = torch.randn(2, 3) if x is None else x
    mm = mt.mutable(factory(), x)
    out_shape = mm(x).shape
    for delta in (grow, shrink):
        mm.resize(vertex, delta)
        assert assert_attributes_match_weights(mm.module) >= 2
        assert mm(x).shape == out_shape
        mm.verify()


def test_grouped_conv_keeps_its_group_width_and_changes_the_group_count():
    mm = mt.mutable(_grouped(), IMAGE)
    mm.resize("2", 3)
    g = mm.module.get_submodule("2")
    assert (g.in_channels, g.out_channels, g.groups) == (10, 15, 5)
    assert g.weight.shape == (15, 2, 3, 3)
    mm.resize("2", -6)
    assert (g.in_channels, g.out_channels, g.groups) == (6, 9, 3)


def test_depthwise_conv_follows_its_input():
    mm = mt.mutable(_depthwise(), IMAGE)
    mm.resize("0", 3)
    dw = mm.module.get_submodule("1")
    assert (dw.in_channels, dw.out_channels, dw.groups) == (11, 11, 11)
    assert dw.weight.shape == (11, 1, 3, 3)


def test_new_norm_channels_start_as_identity():
    mm = mt.mutable(_norms(), IMAGE)
    mm.resize("0", 2)
    bn, gn, prelu = (mm.module.get_submodule(n) for n in ("1", "2", "3"))
    assert torch.equal(bn.weight[8:], torch.ones(2)) and torch.equal(bn.bias[8:], torch.zeros(2))
    assert torch.equal(bn.running_mean[8:], torch.zeros(2))
    assert torch.equal(bn.running_var[8:], torch.ones(2))
    assert torch.equal(gn.weight[8:], torch.ones(2)) and torch.equal(gn.bias[8:], torch.zeros(2))
    assert torch.allclose(prelu.weight[8:], prelu.weight[:8].mean().expand(2))


class Tokens(nn.Module):
    """Embedding -> Linear -> self-attention (batch_first) with a residual -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, idx):
        h = self.proj(self.embed(idx))
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(torch.relu(h + a))


TOKENS = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))


def test_embedding_and_attention_attributes_follow_the_weights():
    torch.manual_seed(0)
    mm = mt.mutable(Tokens(), TOKENS)
    assert mm.graph["attn"].multiple_of == 2
    mm.resize({"embed": 2, "proj": 4})
    embed, attn = mm.module.embed, mm.module.attn
    assert (embed.num_embeddings, embed.embedding_dim) == (10, 10)
    assert (attn.embed_dim, attn.head_dim, attn.kdim, attn.vdim) == (12, 6, 12, 12)
    assert attn.in_proj_weight.shape == (36, 12)
    assert assert_attributes_match_weights(mm.module) == 4
    mm.resize("proj", -6)
    assert (attn.embed_dim, attn.head_dim) == (6, 3)
    assert assert_attributes_match_weights(mm.module) == 4
    assert mm(TOKENS).shape == (2, 5, 3)
    mm.verify()


# ---------------------------------------------------------------- exact growth
def _randomise_norms(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
                m.running_mean.uniform_(-1, 1, generator=generator)
                m.running_var.uniform_(0.5, 2, generator=generator)
    return model


class ReluBnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.fc = nn.Linear(4 * 10 * 10, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = h + F.relu(self.bn2(self.conv2(h)))
        h = F.relu(self.up(h))
        return self.out(F.relu(self.fc(h.flatten(1))))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_growth_preserves_outputs_of_a_relu_bn_net(train):
    torch.manual_seed(0)
    mm = mt.mutable(_randomise_norms(ReluBnNet()), IMAGE)
    mm.train(train)
    before = mm(IMAGE)
    mm.resize({"conv1": 3, "up": 2, "fc": 5})
    assert mm.module.conv2.in_channels == 9 and mm.module.fc.in_features == 6 * 100
    assert torch.allclose(mm(IMAGE), before, rtol=1e-5, atol=1e-6)
    assert assert_attributes_match_weights(mm.module) == 7


def test_growth_preserves_outputs_of_self_attention():
    torch.manual_seed(0)
    mm = mt.mutable(Tokens().eval(), TOKENS)
    before = mm(TOKENS)
    mm.resize("proj", 4)
    assert mm.module.attn.head_dim == 6
    assert torch.allclose(mm(TOKENS), before, rtol=1e-5, atol=1e-6)


def test_shrinking_keeps_the_selected_neurons():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    mm = mt.mutable(net, torch.randn(2, 3))
    change = mm.resize("0", -2, utility={"0": [5.0, 1.0, 4.0, 2.0, 3.0]})
    assert change.outputs["0"].tolist() == [0, 2, 4]
    assert torch.equal(mm.module.get_submodule("0").weight, net[0].weight[[0, 2, 4]])
    assert torch.equal(mm.module.get_submodule("2").weight, net[2].weight[:, [0, 2, 4]])


# ---------------------------------------------------------------- optimizers
def _train_step(mm, optimizer, x, y) -> None:
    optimizer.zero_grad()
    F.cross_entropy(mm(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize(
    ("make", "keys"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), ["momentum_buffer"]),
        (lambda p: torch.optim.Adam(p, lr=0.01), ["exp_avg", "exp_avg_sq"]),
    ],
    ids=["sgd", "adam"],
)
def test_optimizer_state_is_reindexed_with_the_parameters(make, keys):
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), x)
    optimizer = make(mm.parameters())
    mm.attach_optimizer(optimizer)
    _train_step(mm, optimizer, x, y)
    w0, b0, w2 = (mm.module.get_submodule(n) for n in ("0", "0", "2"))
    w0, b0, w2 = w0.weight, b0.bias, w2.weight
    old = {
        (name, k): optimizer.state[p][k].clone()
        for name, p in zip("wbv", (w0, b0, w2), strict=True)
        for k in keys
    }

    change = mm.resize("0", -2, utility={"0": [1.0, 6.0, 5.0, 2.0, 4.0, 3.0]})
    keep = change.outputs["0"].tolist()
    assert keep == [1, 2, 4, 5]
    # Reshaped parameters are new Parameter objects (reshaping in place breaks autograd);
    # the optimizer's param_groups and state follow them.
    w0, b0, w2 = (mm.module.get_submodule(n) for n in ("0", "0", "2"))
    w0, b0, w2 = w0.weight, b0.bias, w2.weight
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in mm.parameters()
    }
    for k in keys:
        assert torch.equal(optimizer.state[w0][k], old[("w", k)][keep])
        assert torch.equal(optimizer.state[b0][k], old[("b", k)][keep])
        assert torch.equal(optimizer.state[w2][k], old[("v", k)][:, keep])
    _train_step(mm, optimizer, x, y)

    before = {k: optimizer.state[w0][k].clone() for k in keys}
    mm.resize("0", 3)
    w0, w2 = mm.module.get_submodule("0").weight, mm.module.get_submodule("2").weight
    for k in keys:
        state = optimizer.state[w0][k]
        assert state.shape == w0.shape == (7, 4)
        assert torch.equal(state[:4], before[k]) and torch.equal(state[4:], torch.zeros(3, 4))
        assert optimizer.state[w2][k].shape == (3, 7)
    _train_step(mm, optimizer, x, y)
    assert all(torch.isfinite(p).all() for p in mm.parameters())


def test_gradients_are_reindexed_too():
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), x)
    mm(x).sum().backward()
    grad = mm.module.get_submodule("2").weight.grad.clone()
    change = mm.resize("0", 2)
    new_grad = mm.module.get_submodule("2").weight.grad
    assert change.inputs["2"][0].tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    assert torch.equal(new_grad[:, :6], grad) and torch.equal(new_grad[:, 6:], torch.zeros(3, 2))


def test_training_step_after_mutation_while_the_previous_loss_is_alive():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), x)
    optimizer = torch.optim.SGD(mm.parameters(), lr=0.01, momentum=0.9)
    mm.attach_optimizer(optimizer)
    loss = mm(x).square().mean()  # a typical loop keeps `loss` until the next iteration
    loss.backward()
    optimizer.step()
    mm.resize("0", -3)
    before = {name: p.detach().clone() for name, p in mm.named_parameters()}
    loss = mm(x).square().mean()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    params = dict(mm.named_parameters())
    assert params["module.0.weight"].shape == (5, 4) and params["module.2.weight"].shape == (3, 5)
    for name, p in params.items():  # every parameter took the step, with state of its shape
        assert torch.isfinite(p).all() and not torch.equal(p, before[name]), name
        assert optimizer.state[p]["momentum_buffer"].shape == p.shape, name
