"""PyTorch adapter for mutnas: trace any ``nn.Module``, mutate it, get a plain module back.

Example:
    >>> import torch, mutnas_torch as mt
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
    ...                           torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> mm = mt.mutable(net, torch.randn(1, 3, 16, 16))
    >>> _ = mm.resize("0", -3)
    >>> mm.module.get_submodule("1").num_features, mm(torch.randn(1, 3, 16, 16)).shape
    (5, torch.Size([1, 4, 12, 12]))
"""

from mutnas_torch.errors import MutnasTorchError, SurgeryError, TraceError, UnsupportedLayerError
from mutnas_torch.io import load, save
from mutnas_torch.model import MutableModel, mutable
from mutnas_torch.trace import register_leaf
from mutnas_torch.utility import TaylorUtility, magnitude

__all__ = [
    "MutableModel",
    "MutnasTorchError",
    "SurgeryError",
    "TaylorUtility",
    "TraceError",
    "UnsupportedLayerError",
    "load",
    "magnitude",
    "mutable",
    "register_leaf",
    "save",
]
