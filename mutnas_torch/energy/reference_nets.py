"""Reference CNNs for calibration: varied width, depth, kernel, groups and resolution.

Twenty small networks span four orders of magnitude of FLOPs per sample and the
regimes a predictor must separate: launch-bound (tiny), bandwidth-bound (depthwise,
1x1, wide activations), compute-bound (wide 3x3 and 5x5), plus residual and inverted
residual blocks. All take ``3 x R x R`` images and end in a 10-way linear head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

__all__ = ["ReferenceNetwork", "reference_networks"]


@dataclasses.dataclass(frozen=True)
class ReferenceNetwork:
    """A named network builder and the image resolution it is measured at.

    Example:
        >>> net = reference_networks()[0]
        >>> net.name, net.input_shape(2)
        ('plain_w16_d2_k3_r32', (2, 3, 32, 32))
    """

    name: str
    build: Callable[[], nn.Module]
    resolution: int

    def input_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        """Input tensor shape for a batch."""
        return (batch_size, 3, self.resolution, self.resolution)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _head(c_in: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10)]


def _plain(width: int, depth: int, kernel: int, groups: int = 1) -> nn.Module:
    """Three stages (width, 2 width, 4 width), ``depth`` convs in all, stride 2 between."""
    layers: list[nn.Module] = [_conv(3, width, 3)]
    c_in = width
    for index in range(depth):
        stage = min(2, index * 3 // max(depth, 1))
        c_out = width * 2**stage
        stride = 2 if c_out != c_in else 1
        layers.append(_conv(c_in, c_out, kernel, stride, groups if c_in % groups == 0 else 1))
        c_in = c_out
    return nn.Sequential(*layers, *_head(c_in))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def _resnet(width: int, blocks: int) -> nn.Module:
    layers: list[nn.Module] = [_conv(3, width, 3)]
    c_in = width
    for stage in range(3):
        c_out = width * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            body = nn.Sequential(_conv(c_in, c_out, 3, stride), _conv(c_out, c_out, 3))
            shortcut = None if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride)
            layers.append(_Residual(body, shortcut))
            c_in = c_out
    return nn.Sequential(*layers, *_head(c_in))


def _mobile(width: int, expansion: int, depth: int, kernel: int) -> nn.Module:
    """Inverted residual blocks: 1x1 expand, depthwise ``kernel``, 1x1 project."""
    layers: list[nn.Module] = [_conv(3, width, 3, 2)]
    c_in = width
    for index in range(depth):
        c_out = width * (2 if index >= depth // 2 else 1)
        stride = 2 if index in (depth // 4, depth // 2) else 1
        hidden = c_in * expansion
        body = nn.Sequential(
            _conv(c_in, hidden, 1),
            _conv(hidden, hidden, kernel, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        layers.append(_Residual(body) if stride == 1 and c_in == c_out else body)
        c_in = c_out
    return nn.Sequential(*layers, *_head(c_in))


def _separable(width: int, depth: int) -> nn.Module:
    """Depthwise 3x3 + pointwise 1x1 pairs (MobileNet v1)."""
    layers: list[nn.Module] = [_conv(3, width, 3)]
    c_in = width
    for index in range(depth):
        c_out = width * 2 ** min(2, index * 3 // depth)
        stride = 2 if c_out != c_in else 1
        layers += [_conv(c_in, c_in, 3, stride, groups=c_in), _conv(c_in, c_out, 1)]
        c_in = c_out
    return nn.Sequential(*layers, *_head(c_in))


def reference_networks() -> tuple[ReferenceNetwork, ...]:
    """The twenty calibration networks, cheapest-looking first.

    Example:
        >>> len(reference_networks())
        20
    """
    nets = [
        ("plain_w16_d2_k3_r32", lambda: _plain(16, 2, 3), 32),
        ("plain_w8_d1_k3_r32", lambda: _plain(8, 1, 3), 32),
        ("plain_w32_d4_k3_r32", lambda: _plain(32, 4, 3), 32),
        ("plain_w64_d4_k3_r32", lambda: _plain(64, 4, 3), 32),
        ("plain_w128_d6_k3_r32", lambda: _plain(128, 6, 3), 32),
        ("plain_w256_d4_k3_r32", lambda: _plain(256, 4, 3), 32),
        ("plain_w64_d4_k5_r32", lambda: _plain(64, 4, 5), 32),
        ("plain_w64_d2_k7_r64", lambda: _plain(64, 2, 7), 64),
        ("plain_w32_d8_k3_r64", lambda: _plain(32, 8, 3), 64),
        ("plain_w96_d4_k1_r32", lambda: _plain(96, 4, 1), 32),
        ("grouped_w128_g4_d4_r32", lambda: _plain(128, 4, 3, groups=4), 32),
        ("grouped_w128_g16_d6_r64", lambda: _plain(128, 6, 3, groups=16), 64),
        ("separable_w64_d6_r64", lambda: _separable(64, 6), 64),
        ("mobile_w32_e6_d8_k3_r64", lambda: _mobile(32, 6, 8, 3), 64),
        ("mobile_w64_e4_d4_k5_r32", lambda: _mobile(64, 4, 4, 5), 32),
        ("resnet_w32_b1_r32", lambda: _resnet(32, 1), 32),
        ("resnet_w64_b2_r64", lambda: _resnet(64, 2), 64),
        ("resnet_w128_b2_r32", lambda: _resnet(128, 2), 32),
        ("resnet_w16_b3_r96", lambda: _resnet(16, 3), 96),
        ("plain_w512_d2_k3_r32", lambda: _plain(512, 2, 3), 32),
    ]
    return tuple(ReferenceNetwork(name, build, resolution) for name, build, resolution in nets)
