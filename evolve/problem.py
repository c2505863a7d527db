"""The problem: data tensors, task, objectives, training recipe and device of one search."""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from evolve.config import TrainingConfig
from evolve.data import DataSplits
from evolve.errors import ConfigError, DatasetError
from evolve.objectives import ObjectiveSet

__all__ = ["Problem", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else the CPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device {device!r} is not a torch device; use 'cpu' or 'cuda:0'"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but CUDA is not available; use 'cpu'")
    return device


def _tensors(dataset: Dataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a dataset as two tensors (inputs, targets)."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        x, y = dataset.tensors
    else:
        batches = list(DataLoader(dataset, batch_size=1024, shuffle=False))
        if not batches:
            raise DatasetError(f"the {split} split is empty")
        x = torch.cat([torch.as_tensor(b[0]) for b in batches])
        y = torch.cat([torch.as_tensor(b[1]) for b in batches])
    if len(x) == 0:
        raise DatasetError(f"the {split} split is empty")
    return x.float().contiguous(), y.contiguous()


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Problem:
    """What a search trains and scores on.

    Args:
        splits: the data (:func:`evolve.data.as_splits` or :func:`evolve.data.load_dataset`).
        objectives: the :class:`~evolve.objectives.ObjectiveSet`.
        training: the training recipe.
        device: where candidates are trained (one at a time); ``None``: CUDA if available.

    Example:
        >>> import torch
        >>> from evolve.data import as_splits
        >>> data = as_splits((torch.randn(20, 3), torch.arange(20) % 2), valid_fraction=0.2)
        >>> p = Problem(data, ObjectiveSet(["accuracy"]), TrainingConfig(), device="cpu")
        >>> p.task, p.n_outputs, tuple(p.x_train.shape), tuple(p.example_input.shape)
        ('classification', 2, (16, 3), (1, 3))
    """

    def __init__(
        self,
        splits: DataSplits,
        objectives: ObjectiveSet,
        training: TrainingConfig,
        *,
        device: str | torch.device | None = None,
    ):
        self.splits = splits
        self.task = splits.task
        self.n_outputs = int(splits.n_outputs)
        self.input_shape = tuple(splits.input_shape)
        self.objectives = objectives
        self.training = training
        self.device = resolve_device(device)
        self.x_train, self.y_train = _tensors(splits.train, "train")
        self.x_valid, self.y_valid = _tensors(splits.valid, "valid")
        if self.task == "regression":
            self.y_train = self.y_train.float().reshape(len(self.y_train), -1)
            self.y_valid = self.y_valid.float().reshape(len(self.y_valid), -1)
        else:
            self.y_train, self.y_valid = self.y_train.long(), self.y_valid.long()
        self.example_input = self.x_train[:1].clone()
        self._on_device: dict[str, tuple[torch.Tensor, ...]] = {}
        names = {"classification": ("accuracy",), "regression": ("r2", "mse")}[self.task]
        if not any(n in names for n in objectives.names):
            raise ConfigError(
                f"no objective measures the {self.task} task; add one of {names} to objectives"
            )

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.x_train)

    def fingerprint(self) -> str:
        """A hash of the training and validation tensors (resume checks it)."""
        digest = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_valid, self.y_valid):
            digest.update(str((tuple(t.shape), str(t.dtype))).encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise :class:`ConfigError` unless ``model`` maps the data's inputs to its outputs.

        Example:
            >>> import torch
            >>> from evolve.data import as_splits
            >>> data = as_splits((torch.randn(20, 6), torch.arange(20) % 2))
            >>> p = Problem(data, ObjectiveSet(["accuracy"]), TrainingConfig(), device="cpu")
            >>> p.check_model(torch.nn.Linear(5, 2))
            Traceback (most recent call last):
            ...
            evolve.errors.ConfigError: the model does not accept this data's inputs of shape (6,) (a batch of (1, 6)): RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x6 and 5x2)
        """
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = model(self.example_input.to(_device_of(model)))
        except Exception as err:
            raise ConfigError(
                f"the model does not accept this data's inputs of shape {self.input_shape} "
                f"(a batch of {tuple(self.example_input.shape)}): {type(err).__name__}: "
                + " ".join(str(err).split())
            ) from None
        finally:
            model.train(was_training)
        if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != (1, self.n_outputs):
            got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
            raise ConfigError(
                f"the model's output for a batch of 1 is {got}, but this {self.task} data needs "
                f"(1, {self.n_outputs}): give the model's last layer {self.n_outputs} outputs"
            )

    def data(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"`` or ``"valid"`` on the problem's device (moved once)."""
        if split not in self._on_device:
            x, y = (
                (self.x_train, self.y_train) if split == "train" else (self.x_valid, self.y_valid)
            )
            self._on_device[split] = (x.to(self.device), y.to(self.device))
        return self._on_device[split]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (classification) or mean squared error (regression)."""
        if self.task == "classification":
            smoothing = self.training.label_smoothing
            return torch.nn.functional.cross_entropy(outputs, targets, label_smoothing=smoothing)
        return torch.nn.functional.mse_loss(outputs.reshape(targets.shape), targets)
