"""Energy-aware fitness: cost counting, energy meters, predictors and calibration.

Everyday use::

    costs = count_costs(model, x)                          # FLOPs, bytes, launches (meta)
    value, source = energy_per_inference_j(model, x)        # measured, else estimated
    meter = auto_meter("cuda")                              # nvml > zeus > estimated
    with meter.window() as w:
        train(model)
    w.result.total_j, w.result.source

``mutnas calibrate`` (:func:`calibrate_main`) fits the predictor to the local device.
"""

from mutnas_torch.energy.calibration import (
    CalibrationReport,
    NetworkRecord,
    PhaseReport,
    calibrate,
    measure_networks,
    run_calibration,
)
from mutnas_torch.energy.cli import calibrate_main
from mutnas_torch.energy.counting import (
    Costs,
    OpCost,
    architecture_hash,
    clear_cost_cache,
    count_costs,
)
from mutnas_torch.energy.devices import (
    DEVICE_SPECS,
    DeviceSpec,
    default_predictor_path,
    device_name,
    device_spec,
)
from mutnas_torch.energy.errors import (
    CalibrationError,
    CostCountingError,
    EnergyError,
    MeterUnavailableError,
)
from mutnas_torch.energy.evaluation import LooResult, leave_one_out, rmspe, spearman
from mutnas_torch.energy.fallback import EstimatedMeter, auto_meter
from mutnas_torch.energy.formulas import FLOP_FORMULA_FIXES, corrected_flop_counter
from mutnas_torch.energy.meters import EnergyMeter, Measurement, MeterWindow, ZeusMeter
from mutnas_torch.energy.nvml import NvmlMeter, nvml_device_id
from mutnas_torch.energy.objectives import (
    ObjectiveValue,
    energy_per_inference_j,
    latency_ms,
    training_energy_j,
    training_step,
)
from mutnas_torch.energy.predictors import FEATURES, AnalyticPredictor, Prediction, load_predictor
from mutnas_torch.energy.protocol import calls_per_window, measure, time_per_call
from mutnas_torch.energy.rapl import RaplMeter
from mutnas_torch.energy.reference_nets import ReferenceNetwork, reference_networks

__all__ = [
    "DEVICE_SPECS",
    "FEATURES",
    "FLOP_FORMULA_FIXES",
    "AnalyticPredictor",
    "CalibrationError",
    "CalibrationReport",
    "CostCountingError",
    "Costs",
    "DeviceSpec",
    "EnergyError",
    "EnergyMeter",
    "EstimatedMeter",
    "LooResult",
    "Measurement",
    "MeterUnavailableError",
    "MeterWindow",
    "NetworkRecord",
    "NvmlMeter",
    "ObjectiveValue",
    "OpCost",
    "PhaseReport",
    "Prediction",
    "RaplMeter",
    "ReferenceNetwork",
    "ZeusMeter",
    "architecture_hash",
    "auto_meter",
    "calibrate",
    "calibrate_main",
    "calls_per_window",
    "clear_cost_cache",
    "corrected_flop_counter",
    "count_costs",
    "default_predictor_path",
    "device_name",
    "device_spec",
    "energy_per_inference_j",
    "latency_ms",
    "leave_one_out",
    "load_predictor",
    "measure",
    "measure_networks",
    "nvml_device_id",
    "reference_networks",
    "rmspe",
    "run_calibration",
    "spearman",
    "time_per_call",
    "training_energy_j",
    "training_step",
]
