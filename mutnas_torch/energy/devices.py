"""Device identification and the small table of device specs behind predictor defaults."""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from pathlib import Path

import torch

__all__ = [
    "DEVICE_SPECS",
    "DeviceSpec",
    "default_predictor_path",
    "device_name",
    "device_spec",
]


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """What a device's data sheet says, enough for uncalibrated defaults.

    Attributes:
        name: marketing name.
        kind: ``"gpu"`` or ``"cpu"``.
        peak_flops: dense FP32 FLOP/s (tensor-core TF32/BF16 work runs faster:
            calibration absorbs that).
        memory_bandwidth: bytes/s.
        launch_s: seconds of overhead per launched op.
        tdp_w: board or package power limit.
        idle_w: power at rest.
        eta_compute, eta_memory: Paleo's fractions of peak reached in practice.
    """

    name: str
    kind: str
    peak_flops: float
    memory_bandwidth: float
    launch_s: float
    tdp_w: float
    idle_w: float
    eta_compute: float = 0.62
    eta_memory: float = 0.72


DEVICE_SPECS: dict[str, DeviceSpec] = {
    "h100": DeviceSpec("NVIDIA H100 SXM", "gpu", 67e12, 3.35e12, 4e-6, 700.0, 120.0),
    "h200": DeviceSpec("NVIDIA H200 SXM", "gpu", 67e12, 4.8e12, 4e-6, 700.0, 120.0),
    "a100": DeviceSpec("NVIDIA A100 SXM", "gpu", 19.5e12, 2.04e12, 4e-6, 400.0, 60.0),
    "gpu": DeviceSpec("generic GPU", "gpu", 20e12, 1e12, 5e-6, 300.0, 50.0),
    "cpu": DeviceSpec("generic CPU", "cpu", 0.5e12, 50e9, 5e-6, 65.0, 6.5),
}
"""Spec table; keys are matched case-insensitively inside device names."""


def device_name(device: str | torch.device = "cpu") -> str:
    """The device's model name (``torch.cuda.get_device_name``, or the CPU's).

    Example:
        >>> isinstance(device_name("cpu"), str)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "generic GPU"
        return torch.cuda.get_device_name(device.index or 0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_spec(device: str | torch.device | DeviceSpec = "cpu") -> DeviceSpec:
    """The :data:`DEVICE_SPECS` entry for a device, a device name, or a spec key.

    Example:
        >>> device_spec("NVIDIA H100 80GB HBM3").name
        'NVIDIA H100 SXM'
        >>> device_spec("cpu").kind
        'cpu'
    """
    if isinstance(device, DeviceSpec):
        return device
    text = str(device)
    if text.startswith("cuda"):
        text = device_name(text)
    lowered = text.lower()
    for key in ("h100", "h200", "a100"):
        if key in lowered:
            return DEVICE_SPECS[key]
    if lowered == "gpu" or any(word in lowered for word in ("nvidia", "cuda", "gpu")):
        return DEVICE_SPECS["gpu"]
    return DEVICE_SPECS["cpu"]


def default_predictor_path(device: str | torch.device = "cpu") -> Path:
    """Where ``calibrate`` saves the predictor of a device.

    ``$MUTNAS_CACHE_DIR/energy/<device name>.json``, else under ``$XDG_CACHE_HOME/mutnas``
    or ``~/.cache/mutnas``.

    Example:
        >>> default_predictor_path("cpu").suffix
        '.json'
    """
    base = os.environ.get("MUTNAS_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "mutnas")
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") or "device"
    return Path(base) / "energy" / f"{slug}.json"
