"""GPU energy through NVML (``nvidia-ml-py``, imported as ``pynvml``).

NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the
driver loaded, Volta and newer) updates about every 100 ms on an H100 and one read takes
about 4 ms, so windows under a second are noise; older GPUs only report power, which is
polled and integrated.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch

from mutnas_torch.energy.errors import MeterUnavailableError
from mutnas_torch.energy.meters import EnergyMeter, PowerPoller

__all__ = ["NvmlMeter", "nvml_device_id"]

logger = logging.getLogger(__name__)


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as error:
        raise MeterUnavailableError(
            "NVML energy needs nvidia-ml-py: pip install 'mutnas[gpu]' (or nvidia-ml-py)"
        ) from error
    return pynvml


def nvml_device_id(device_index: int, environ: dict[str, str] | None = None) -> int | str:
    """The NVML device (index, or UUID string) that CUDA calls ``cuda:device_index``.

    CUDA numbers only the devices listed in ``CUDA_VISIBLE_DEVICES`` (indices or
    ``GPU-``/``MIG-`` UUIDs), in that order; NVML always sees every device.

    Args:
        device_index: the ordinal torch uses (``cuda:1`` -> 1).
        environ: environment to read (default ``os.environ``).

    Returns:
        The NVML index, or the UUID given in ``CUDA_VISIBLE_DEVICES``.

    Raises:
        MeterUnavailableError: ``CUDA_VISIBLE_DEVICES`` lists fewer devices.

    Example:
        >>> nvml_device_id(1, {"CUDA_VISIBLE_DEVICES": "2,3"})
        3
        >>> nvml_device_id(0, {})
        0
    """
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return device_index
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if not 0 <= device_index < len(entries):
        raise MeterUnavailableError(
            f"cuda:{device_index} does not exist: CUDA_VISIBLE_DEVICES={visible!r} lists "
            f"{len(entries)} device(s)"
        )
    entry = entries[device_index]
    return int(entry) if entry.isdigit() else entry


def _nvml_handle(pynvml: Any, device_index: int) -> Any:
    if torch.cuda.is_available():
        try:  # exact even when CUDA_DEVICE_ORDER differs from NVML's PCI order
            props = torch.cuda.get_device_properties(device_index)
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            return pynvml.nvmlDeviceGetHandleByPciBusId(bus.encode())
        except Exception as error:  # fall back on CUDA_VISIBLE_DEVICES
            logger.debug("NVML lookup by PCI bus id failed (%s)", error)
    device = nvml_device_id(device_index)
    if isinstance(device, int):
        return pynvml.nvmlDeviceGetHandleByIndex(device)
    uuid = device.split("/")[0]
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        full = pynvml.nvmlDeviceGetUUID(handle)
        full = full.decode() if isinstance(full, bytes) else full
        if full.startswith(uuid) or uuid.startswith("MIG-"):
            return handle  # MIG: NVML reports the parent GPU's energy
    raise MeterUnavailableError(f"no NVML device matches CUDA_VISIBLE_DEVICES entry {device!r}")


class NvmlMeter(EnergyMeter):
    """GPU energy from NVML: the total-energy counter, or polled power where there is none.

    Args:
        device_index: the CUDA ordinal as torch numbers it (``cuda:0`` -> 0).
        poll_interval_s: sampling period when power has to be polled (pre-Volta GPUs).

    Raises:
        MeterUnavailableError: nvidia-ml-py is missing, NVML fails to start, or the
            device reports neither energy nor power.

    Example:
        >>> try:
        ...     meter = NvmlMeter(0)
        ... except MeterUnavailableError:
        ...     meter = None  # no NVIDIA driver here
    """

    source = "nvml"

    def __init__(self, device_index: int = 0, *, poll_interval_s: float = 0.02) -> None:
        super().__init__()
        self.device_index = device_index
        self.poll_interval_s = poll_interval_s
        self._nvml = _import_pynvml()
        try:
            self._nvml.nvmlInit()
            self._handle = _nvml_handle(self._nvml, device_index)
        except self._nvml.NVMLError as error:
            raise MeterUnavailableError(
                f"NVML could not open cuda:{device_index}: {error}"
            ) from error
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.mode = "counter"
        except self._nvml.NVMLError:
            try:
                self._nvml.nvmlDeviceGetPowerUsage(self._handle)
            except self._nvml.NVMLError as error:
                raise MeterUnavailableError(
                    f"cuda:{device_index} reports neither energy nor power through NVML: {error}"
                ) from error
            self.mode = "polling"

    def synchronize(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize(self.device_index)

    def counter_j(self) -> float | None:
        if self.mode != "counter":
            return None
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def _power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0

    def _begin(self) -> Any:
        if self.mode == "counter":
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        return PowerPoller(self._power_w, self.poll_interval_s)

    def _end(self, token: Any, elapsed_s: float) -> tuple[float | None, None, None]:
        if self.mode == "counter":
            end = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return (end - token) / 1000.0, None, None
        return token.stop() * elapsed_s, None, None  # mean power over the window's time

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()
