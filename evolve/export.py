"""Exporting a searched model: ONNX with a dynamic batch axis, checked against torch."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["ExportError", "MatrixPool", "export_onnx"]


class ExportError(Exception):
    """The model cannot be exported, or the exported model computes something else."""


def export_onnx(module, input_shape: Sequence[int], path: Path, *, atol: float = 1e-4):
    """Export ``module`` to ONNX with a dynamic batch axis and check it against torch.

    Adaptive average pools whose output size does not divide their input size (which the
    ONNX exporter refuses) are first rewritten as the equivalent fixed averaging matrices,
    since the input shape is known.

    Returns ``(max_abs_difference, checker)``: outputs compared with onnxruntime when it is
    installed (``checker == "onnxruntime"``); otherwise the file is validated with
    ``onnx.checker`` and the difference is ``nan``.

    Raises:
        ExportError: ``onnx`` is missing, the export fails, or the outputs differ.

    Example:
        >>> import tempfile, torch
        >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.AdaptiveAvgPool1d(5),
        ...                           torch.nn.Flatten(), torch.nn.Linear(20, 3))
        >>> diff, checker = export_onnx(net, (1, 12), Path(tempfile.mkdtemp()) / "net.onnx")
        >>> checker, diff < 1e-5
        ('onnxruntime', True)
    """
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'mutnas[onnx]'"
        ) from None
    module = _exportable(module.cpu().eval(), input_shape)
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (x,),
                str(path),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                dynamo=False,
            )
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ExportError(f"ONNX export failed: {type(err).__name__}: {first}") from None
    onnx.checker.check_model(onnx.load(str(path)))
    try:
        import onnxruntime
    except ImportError:
        return float("nan"), "onnx.checker"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = module(x)
    diff = float((torch.from_numpy(got) - want).abs().max())
    if not diff <= atol * max(1.0, float(want.abs().max())):
        raise ExportError(f"the ONNX model's outputs differ from torch's by {diff:.3g}")
    return diff, "onnxruntime"


def _pool_matrix(n_in: int, n_out: int):
    """``(n_in, n_out)`` weights of adaptive average pooling along one axis."""
    matrix = torch.zeros(n_in, n_out)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        matrix[start:end, i] = 1.0 / (end - start)
    return matrix


def _exportable(module, input_shape: Sequence[int]):
    """``module`` with each non-divisible adaptive average pool replaced by matrices."""
    pools = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
    if not any(isinstance(m, pools) for m in module.modules()):
        return module
    if not isinstance(module, fx.GraphModule):
        module = fx.symbolic_trace(module)
    module = copy.deepcopy(module)
    ShapeProp(module).propagate(torch.zeros(1, *input_shape))
    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        pool = module.get_submodule(node.target)
        if not isinstance(pool, pools):
            continue
        shape_in = node.args[0].meta["tensor_meta"].shape
        shape_out = node.meta["tensor_meta"].shape
        dims = 1 if isinstance(pool, nn.AdaptiveAvgPool1d) else 2
        sizes = list(zip(shape_in[-dims:], shape_out[-dims:], strict=True))
        if all(a % b == 0 for a, b in sizes):
            continue
        replacement = MatrixPool([_pool_matrix(a, b) for a, b in sizes])
        module.add_submodule(node.target, replacement)
        changed = True
    if changed:
        module.recompile()
    return module


class MatrixPool(nn.Module):
    """Adaptive average pooling as fixed averaging matrices, one per pooled axis.

    Example:
        >>> x = torch.randn(2, 3, 7)
        >>> pool = MatrixPool([_pool_matrix(7, 3)])
        >>> torch.allclose(pool(x), nn.functional.adaptive_avg_pool1d(x, 3))
        True
    """

    def __init__(self, matrices: Sequence[torch.Tensor]) -> None:
        super().__init__()
        for i, matrix in enumerate(matrices):
            self.register_buffer(f"p{i}", matrix)
        self.n = len(matrices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n == 1:
            return x @ self.p0
        return (x.transpose(-1, -2) @ self.p0).transpose(-1, -2) @ self.p1
