"""The ``mutnas`` command: search, resume, report, retrain, export, calibrate.

::

    mutnas evolve                                 # MNIST-1D, about 5 minutes on a laptop CPU
    mutnas evolve --dataset digits --objectives accuracy,energy --population 12
    mutnas evolve --config search.toml            # the same options from a TOML file
    mutnas resume runs/mnist1d-seed0 --generations 10
    mutnas report runs/mnist1d-seed0 --test       # Pareto front table and plots
    mutnas retrain runs/mnist1d-seed0 --model 17 --epochs 30 --width 2
    mutnas export runs/mnist1d-seed0 --model 17 --format onnx
    mutnas calibrate                              # fit the energy predictor to this device

Every run directory holds ``config.json`` (the search, written by :func:`evolve.fit`) and
``cli.json`` (the command's resolved options, with which ``resume``, ``report`` and
``retrain`` reload the data), both with the run's id. ``evolve`` starts only in a new or
empty folder; ``evolve``, ``resume``, ``retrain`` (and ``export`` into the run directory)
hold the run's lock, so a second one stops with "runs/x is in use by process N";
``report`` only reads, and redraws the plots only when the run is not in use (see
:mod:`evolve.rundir`). Options from a TOML file or ``cli.json`` go through the flags' own
converters (``true`` is not a number). Errors are one line on standard error: exit status
2 for a bad command line, 1 for anything else that stops a command (missing, corrupt or
mismatched files, an unknown dataset, a model that does not fit the data).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import math
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

__all__ = ["main"]

_COMMANDS = {
    "evolve": "search a Pareto front of trained models (default: MNIST-1D)",
    "resume": "continue a run directory (optionally for more generations)",
    "report": "print a run's Pareto front and redraw its plots",
    "retrain": "train one model of a run further or from scratch, then test it",
    "export": "write one model of a run as ONNX or as a mutnas model folder",
    "calibrate": "fit the energy predictor to this device (mutnas calibrate --help)",
}

_USAGE = "usage: mutnas <command> [options]   (mutnas <command> --help)\n\ncommands:\n" + "".join(
    f"  {name:<10} {text}\n" for name, text in _COMMANDS.items()
)


class CommandError(Exception):
    """A command cannot go on; the message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """``argparse`` that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message} (see {self.prog} --help)", status=2)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise CommandError(message.strip(), status=status or 2)
        raise _HelpShown


class _HelpShown(Exception):
    pass


# ----------------------------------------------------------------------------- values
def _number(
    kind: type,
    *,
    minimum: float,
    strict: bool,
    below: float | None = None,
    maximum: float | None = None,
) -> Callable[[Any], Any]:
    """A converter to ``kind`` checking ``value > minimum`` (``>=`` unless ``strict``) and,
    with ``below``, ``value < below``, or with ``maximum``, ``value <= maximum``. Booleans
    (``true`` in a TOML or JSON file) are refused: they are not numbers."""
    word = "an integer" if kind is int else "a number"
    low, high = (f"{x:g}" if isinstance(x, float) else str(x) for x in (minimum, maximum))
    if below is not None:
        bound = f"between {low} and {below:g}"
    elif maximum is not None:
        bound = f"from {low} to {high}"
    else:
        bound = f"> {low}" if strict else f">= {low}"

    def convert(text: Any) -> Any:
        try:
            if isinstance(text, bool):
                raise ValueError
            value = kind(text)
            if kind is int and isinstance(text, float) and not float(text).is_integer():
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {word} {bound}, got {text!r}") from None
        too_high = (below is not None and not value < below) or (
            maximum is not None and value > maximum
        )
        if value < minimum or (strict and value == minimum) or too_high or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {word} {bound}, got {text!r}")
        return value

    convert.__name__ = f"{word} {bound}"
    return convert


#: Largest ``--seed`` (seeds torch generators, which take 64 bits at most).
MAX_SEED = 2**32 - 1
#: Largest ``mutnas retrain --depth``: layers inserted one by one, each a structural edit.
MAX_DEPTH = 32
#: Largest ``mutnas retrain --width`` factor.
MAX_WIDTH = 16.0

_positive_int = _number(int, minimum=0, strict=True)
_natural = _number(int, minimum=0, strict=False)
_seed = _number(int, minimum=0, strict=False, maximum=MAX_SEED)
_positive_float = _number(float, minimum=0, strict=True)
_fraction = _number(float, minimum=0, strict=True, below=1)


def _text(value: Any) -> str:
    """A string option (a number or a list in a TOML or JSON file is refused)."""
    if not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"expected a string, got {value!r}")
    return value


def _path(value: Any) -> Path:
    """A path option."""
    return Path(_text(value) if not isinstance(value, Path) else value)


def _objectives(text: Any) -> list[str]:
    names = text if isinstance(text, list) else _text(text).split(",")
    names = [_text(n).strip() for n in names if _text(n).strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one objective, e.g. accuracy,flops")
    return names


# ----------------------------------------------------------------------------- evolve
_EVOLVE_OPTIONS: dict[str, tuple[Callable[[Any], Any] | None, Any, str]] = {
    # name: (type, default, help)
    "dataset": (_text, "mnist1d", "a built-in dataset (evolve.data.list_datasets())"),
    "data_dir": (_path, None, "folder with the dataset's native files (cifar10, mnist...)"),
    "limit": (_positive_int, None, "use at most this many training and test samples"),
    "valid_fraction": (
        _fraction,
        0.1,
        "share of the training data held out to score candidates (small ones overfit: "
        "MNIST-1D fronts scored on 400 samples lost 4 points on test)",
    ),
    "task": (_text, None, "classification or regression (default: from the dataset)"),
    "objectives": (
        _objectives,
        None,
        "comma-separated: accuracy, r2, mse, flops, parameters, "
        "latency, energy (default: accuracy or r2, and flops)",
    ),
    "population": (_positive_int, 8, "survivors per generation"),
    "generations": (_positive_int, 6, "generations, the initial population's included"),
    "minutes": (_positive_float, 5.0, "stop after the generation that passes this wall time"),
    "epochs": (_positive_float, 3.0, "training epochs per evaluation"),
    "seed": (_seed, 0, "drives the data split, the models and the training"),
    "device": (_text, None, "cpu, cuda, cuda:1 (default: cuda if available)"),
    "run_dir": (
        _path,
        None,
        "where to checkpoint: a new or empty folder (default: runs/<dataset>-seed<seed>)",
    ),
    "model": (
        _path,
        None,
        "start from this model folder (mutnas_torch.save) instead of the built-in search space",
    ),
}
_EVALUATOR_OPTIONS = ("evaluator", "workers", "per_gpu", "num_gpus", "ray_address", "timeout")


def _add_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        kind, default, text = _EVOLVE_OPTIONS[name]
        flag = "--" + name.replace("_", "-")
        suffix = "" if default is None else f" (default: {default})"
        parser.add_argument(flag, type=kind, default=default, help=text + suffix)


def _evolve_parser() -> _Parser:
    from evolve.parallel import add_evaluator_arguments

    parser = _Parser(
        prog="mutnas evolve",
        description="Evolve a Pareto front of trained models and save it with its plots.",
    )
    parser.add_argument("--config", type=Path, default=None, help="a TOML file of these options")
    _add_flags(parser, list(_EVOLVE_OPTIONS))
    add_evaluator_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress or log lines")
    return parser


def _toml_options(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Options from a TOML file (top level or an ``[evolve]`` table), checked like flags."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CommandError(f"cannot read config file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise CommandError(f"config file {path} is not valid TOML: {err}") from None
    data = data.get("evolve", data)
    if not isinstance(data, dict):
        raise CommandError(f"{path}: [evolve] must be a table of options")
    return _checked_options(data, parser, path)


def _checked_options(
    data: dict[str, Any], parser: argparse.ArgumentParser, source: Path, *, ignore=()
) -> dict[str, Any]:
    """``data`` (from a TOML file or a run's ``cli.json``) checked by the flags' own
    converters and choices; a switch must be ``true`` or ``false``."""
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config", "quiet")}
    options = {}
    for key, value in data.items():
        if key in ignore:
            continue
        dest = {"async": "asynchronous"}.get(key, key.replace("-", "_"))
        if dest not in actions:
            close = difflib.get_close_matches(dest, list(actions), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(actions)}"
            raise CommandError(f"{source}: unknown option {key!r}{hint}")
        options[dest] = _checked_value(actions[dest], key, value, source)
    return options


def _checked_value(action: argparse.Action, key: str, value: Any, source: Path) -> Any:
    if action.nargs == 0:  # a switch such as --async
        if not isinstance(value, bool):
            raise CommandError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if value is None and action.default is not None:
        raise CommandError(f"{source}: {key} must not be null (default: {action.default})")
    plain = {int: "an integer", float: "a number"}.get(action.type)
    try:
        if plain is not None and isinstance(value, bool):  # int(True) is 1
            raise argparse.ArgumentTypeError(f"expected {plain}, got {value!r}")
        if action.type is None and value is not None and not isinstance(value, str):
            raise argparse.ArgumentTypeError(f"expected a string, got {value!r}")
        if action.type is not None and value is not None:
            value = action.type(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        raise CommandError(f"{source}: {key}: {err}") from None
    if action.choices is not None and value is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise CommandError(f"{source}: {key} must be one of {choices}, got {value!r}")
    return value


def _parse_evolve(argv: Sequence[str]) -> argparse.Namespace:
    parser = _evolve_parser()
    first = parser.parse_args(argv)
    if first.config is not None:
        parser.set_defaults(**_toml_options(first.config, parser))
        return parser.parse_args(argv)
    return first


def _load_data(options: dict[str, Any]):
    """The dataset a run's options name (``options`` as in ``cli.json``)."""
    from evolve.data import load_dataset

    kwargs: dict[str, Any] = {"seed": options["seed"]}
    default = _EVOLVE_OPTIONS["valid_fraction"][1]
    kwargs["valid_fraction"] = options.get("valid_fraction", default)  # older runs lack it
    if options.get("data_dir") is not None:
        kwargs["root"] = options["data_dir"]
    if options.get("limit") is not None:
        kwargs["limit"] = options["limit"]
    return load_dataset(options["dataset"], **kwargs)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}


@contextlib.contextmanager
def _evaluator(options: dict[str, Any]) -> Iterator[Any]:
    """The evaluator the options ask for, shut down (its workers stopped) afterwards."""
    from evolve.parallel import evaluator_from_args

    evaluator = evaluator_from_args(
        argparse.Namespace(**{k: options[k] for k in _EVALUATOR_OPTIONS})
    )
    try:
        yield evaluator
    finally:
        shutdown = getattr(evaluator, "shutdown", None)
        if shutdown is not None:
            shutdown()


def _configure_logging(quiet: bool) -> None:
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=False)


def _evolve(argv: Sequence[str], out: TextIO) -> int:
    import evolve
    from evolve.rundir import RunDirectory

    args = _parse_evolve(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("config", "quiet")}
    run_dir = args.run_dir or Path("runs") / f"{args.dataset}-seed{args.seed}"
    options["run_dir"] = run_dir
    _configure_logging(args.quiet)
    # a new or empty folder, locked; refused later on, it is left as it was
    with RunDirectory.create(run_dir, resume_hint=f"'mutnas resume {run_dir}'") as run:
        splits = _load_data(options)
        if args.task is not None and args.task != splits.task:
            raise CommandError(
                f"--task {args.task} does not match dataset {args.dataset!r}, a {splits.task} task"
            )
        model = None
        if args.model is not None:
            model = _read_model(args.model)
        stop = evolve.TimeTermination(args.minutes * 60) if args.minutes else None
        run.write_json("cli.json", {"command": "evolve", **_jsonable(options)})
        with _evaluator(options) as evaluator:
            result = evolve.fit(
                splits,
                objectives=args.objectives,
                population=args.population,
                generations=args.generations,
                termination=stop,
                training=evolve.TrainingConfig(epochs=args.epochs),
                seed=args.seed,
                device=args.device,
                run_dir=run,
                model=model,
                evaluator=evaluator,
                asynchronous=args.asynchronous,
                progress=False if args.quiet else None,
            )
    _print_front(result, run_dir, out)
    return 0


def _read_model(path: Path):
    from mutnas_torch import io as model_io

    if not (path / "model.json").exists():
        raise CommandError(
            f"{path} is not a model folder (no model.json); write one with mutnas_torch.save"
        )
    return model_io.load(path)


def _print_front(result, run_dir: Path, out: TextIO) -> None:
    out.write(f"Pareto front after {result.n_generations} generations ({run_dir}):\n")
    out.write(result.summary() + "\n")
    plots = [p for p in ("pareto.png", "history.png") if (Path(run_dir) / p).exists()]
    if plots:
        out.write("plots: " + ", ".join(str(Path(run_dir) / p) for p in plots) + "\n")


# ----------------------------------------------------------------------------- run dirs
def _require_run(run_dir: Path) -> None:
    """Refuse (one line) a path that holds no checkpointed search; touches nothing."""
    if not run_dir.is_dir():
        raise CommandError(f"{run_dir} is not a directory")
    if not (run_dir / "state.json").exists():
        raise CommandError(
            f"{run_dir} holds no search (no state.json); start one with mutnas evolve"
        )


def _run_options(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``cli.json``, checked by the flags' own converters (or what
    ``config.json`` says, for runs of ``fit``)."""
    from evolve import checkpoint, runfiles

    _require_run(run_dir)
    config = runfiles.read_config(run_dir)
    cli = run_dir / "cli.json"
    if not cli.exists():
        if config["data"]["dataset"] is None:
            raise CommandError(
                f"the run in {run_dir} was started from Python with your own data: use "
                f"evolve.resume(run_dir, train, valid) there"
            )
        return {"dataset": config["data"]["dataset"]["name"], "seed": config["seed"]}
    data = checkpoint.read_json(cli)
    if not isinstance(data, dict) or data.get("command") != "evolve":
        raise CommandError(f"{cli} is not the options of a mutnas evolve command")
    if data.get("run_id") != config["run_id"]:
        raise runfiles.mismatch_error(cli, run_dir / "config.json", "run ids")
    parser = _evolve_parser()
    defaults = vars(parser.parse_args([]))
    return {**defaults, **_checked_options(data, parser, cli, ignore=("command", "run_id"))}


def _load_run(run_dir: Path):
    """A :class:`~evolve.SearchResult` read from a run directory's last checkpoint (every
    file checked, models not loaded), and its config."""
    from evolve import runfiles
    from evolve.candidate import Candidate
    from evolve.components import build
    from evolve.objectives import Objective
    from evolve.result import SearchResult

    config = runfiles.read_config(run_dir)
    found = runfiles.read_checkpoint(run_dir, config["run_id"], strict=False)
    where = run_dir / "config.json"
    objectives = [
        build(o, Objective, where=f"{where}: objectives[{i}]")
        for i, o in enumerate(config["objectives"])
    ]
    names = tuple(o.name for o in objectives)
    pareto = [Candidate.from_record(r, None) for r in found.state["archive"]]
    if objectives:  # best primary objective first, as SearchResult.pareto
        sign = -1.0 if objectives[0].direction == "max" else 1.0
        pareto.sort(key=lambda c: sign * c.scores.get(names[0], math.nan))
    return SearchResult(
        best=pareto[0] if pareto else None,
        pareto=pareto,
        history=found.state["history"],
        candidates=found.records,
        objectives=names,
        run_dir=run_dir,
        seed=config["seed"],
    ), config


def _model_folder(run_dir: Path, model_id: int, *, retrained: bool = False) -> Path:
    base = run_dir / ("retrained" if retrained else "models")
    folder = base / str(model_id)
    if not (folder / "model.json").exists():
        known = (
            sorted((int(p.name) for p in base.glob("*") if p.name.isdigit()), key=int)
            if base.exists()
            else []
        )
        what = "retrained models" if retrained else "saved models"
        raise CommandError(
            f"no model {model_id} in {base} ({what}: {', '.join(map(str, known)) or 'none'})"
        )
    return folder


# ----------------------------------------------------------------------------- resume
def _resume(argv: Sequence[str], out: TextIO) -> int:
    import evolve
    from evolve.parallel import add_evaluator_arguments
    from evolve.rundir import RunDirectory

    parser = _Parser(prog="mutnas resume", description="Continue a run directory.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--generations",
        type=_positive_int,
        default=None,
        help="run until this many generations in all (default: as recorded)",
    )
    parser.add_argument(
        "--minutes",
        type=_positive_float,
        default=None,
        help="stop after this wall time (this session)",
    )
    parser.add_argument("--device", default=None)
    add_evaluator_arguments(parser)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    _require_run(args.run_dir)
    with RunDirectory.open(args.run_dir) as run:  # locked before anything is read
        options = _run_options(args.run_dir)
        stops = []
        if args.generations is not None:
            stops.append(evolve.MaxGenerationsTermination(args.generations))
        if args.minutes is not None:
            stops.append(evolve.TimeTermination(args.minutes * 60))
        termination = (
            None if not stops else stops[0] if len(stops) == 1 else evolve.AnyTermination(stops)
        )
        splits = _load_data(options) if (args.run_dir / "cli.json").exists() else None
        with _evaluator(vars(args)) as evaluator:
            result = evolve.resume(
                run,
                splits,
                device=args.device,
                termination=termination,
                evaluator=evaluator,
                asynchronous=args.asynchronous,
                progress=False if args.quiet else None,
            )
    _print_front(result, args.run_dir, out)
    return 0


# ----------------------------------------------------------------------------- report
def _report(argv: Sequence[str], out: TextIO) -> int:
    parser = _Parser(prog="mutnas report", description="A run's Pareto front and plots.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--test",
        action="store_true",
        help="also score the front's models on the held-out test split",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    options = _run_options(args.run_dir)
    result, _ = _load_run(args.run_dir)
    rows = []
    splits = _load_data(options) if args.test else None
    if args.test and splits.test is None:
        raise CommandError(f"dataset {options['dataset']!r} has no test split")
    for c in result.pareto:
        row = {"id": c.id, "generation": c.generation, **c.scores}
        if splits is not None:
            model = _load_model(_model_folder(args.run_dir, c.id))
            row.update({f"test_{k}": v for k, v in _test_scores(model, splits).items()})
        rows.append(row)
    columns = list(rows[0]) if rows else ["id"]
    out.write(
        f"Pareto front of {args.run_dir} ({result.n_generations} generations, "
        f"{len(result.candidates)} candidates, seed {result.seed}):\n"
    )
    out.write(_table(columns, rows) + "\n")
    _redraw_plots(result, args.run_dir, out)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _redraw_plots(result, run_dir: Path, out: TextIO) -> None:
    """Redraw the run's plots, unless a search holds the run (it draws them itself)."""
    from evolve.plots import save_plots
    from evolve.rundir import RunDirectory, RunInUseError

    try:
        with RunDirectory.open(run_dir):
            for path in save_plots(result, run_dir):
                out.write(f"plot: {path}\n")
    except RunInUseError as err:
        out.write(f"plots not redrawn: {err}\n")


def _table(columns: Sequence[str], rows: Sequence[dict]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    widths = [max([len(c)] + [len(cell(r.get(c, ""))) for r in rows]) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    for r in rows:
        lines.append(
            "  ".join(cell(r.get(c, "")).rjust(w) for c, w in zip(columns, widths, strict=True))
        )
    return "\n".join(lines)


def _load_model(folder: Path):
    from evolve import checkpoint

    return checkpoint.load_model(folder)


def _test_scores(model, splits, device=None) -> dict[str, float]:
    """Test-split scores: accuracy for classification; R² and MSE for regression."""
    import torch

    from evolve.problem import _tensors
    from evolve.training import predict

    x, y = _tensors(splits.test, "test")
    device = torch.device(device or "cpu")
    model = model.to(device).eval()
    with torch.no_grad():
        outputs = predict(model, x.to(device)).cpu()
    if splits.task == "classification":
        return {"accuracy": float((outputs.argmax(1) == y).float().mean())}
    y = y.reshape(outputs.shape).float()
    mse = float(((outputs - y) ** 2).mean())
    var = float(((y - y.mean(0)) ** 2).mean())
    return {"r2": 1.0 - mse / var if var > 0 else float("nan"), "mse": mse}


# ----------------------------------------------------------------------------- retrain
def _retrain(argv: Sequence[str], out: TextIO) -> int:
    from evolve.cli_retrain import retrain

    return retrain(argv, out)


# ----------------------------------------------------------------------------- export
def _export(argv: Sequence[str], out: TextIO) -> int:
    parser = _Parser(
        prog="mutnas export",
        description="Write one model of a run as ONNX (checked against torch) or as a mutnas "
        "model folder (safetensors + JSON, mutnas_torch.load).",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", type=_natural, required=True)
    parser.add_argument("--format", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--retrained", action="store_true", help="the model from mutnas retrain")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: RUN_DIR/export/model<ID>.onnx or RUN_DIR/export/model<ID> (a target "
        "inside the run directory waits for no search: the run must not be in use)",
    )
    args = parser.parse_args(argv)
    _require_run(args.run_dir)
    name = f"model{args.model}.onnx" if args.format == "onnx" else f"model{args.model}"
    target = args.out or args.run_dir / "export" / name
    with _lock_if_inside(args.run_dir, target):
        return _export_model(args, target, out)


@contextlib.contextmanager
def _lock_if_inside(run_dir: Path, target: Path) -> Iterator[None]:
    """Hold the run's lock while writing ``target`` if it lies inside the run directory."""
    from evolve.rundir import RunDirectory

    inside = run_dir.resolve() in target.resolve().parents
    with RunDirectory.open(run_dir) if inside else contextlib.nullcontext():
        yield


def _export_model(args: argparse.Namespace, target: Path, out: TextIO) -> int:
    from evolve import runfiles

    config = runfiles.read_config(args.run_dir)
    mm = _load_model(_model_folder(args.run_dir, args.model, retrained=args.retrained))
    shape = tuple(config["data"]["input_shape"])
    target.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "torch":
        from mutnas_torch import io as model_io

        model_io.save(mm.to_module(), target)
        out.write(f"wrote {target} (load it with mutnas_torch.load({str(target)!r}))\n")
        return 0
    from evolve.export import ExportError, export_onnx

    try:
        diff, checked_by = export_onnx(mm.to_module(), shape, target)
    except ExportError as err:
        raise CommandError(str(err)) from None
    out.write(f"wrote {target}; {checked_by}: max |onnx - torch| = {diff:.2e}\n")
    return 0


# ----------------------------------------------------------------------------- calibrate
def _calibrate(argv: Sequence[str], out: TextIO) -> int:
    from mutnas_torch.energy.cli import calibrate_command

    return calibrate_command(list(argv), stdout=out, parser_class=_Parser)


# ----------------------------------------------------------------------------- main
_RUNNERS: dict[str, Callable[[Sequence[str], TextIO], int]] = {
    "evolve": _evolve,
    "resume": _resume,
    "report": _report,
    "retrain": _retrain,
    "export": _export,
    "calibrate": _calibrate,
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Entry point of the ``mutnas`` command; returns the exit status.

    Example:
        >>> import io
        >>> err = io.StringIO()
        >>> main(["frobnicate"], stdout=io.StringIO(), stderr=err), err.getvalue().splitlines()[0]
        (2, "mutnas: unknown command 'frobnicate' (commands: evolve, resume, report, retrain, export, calibrate)")
        >>> main(["evolve", "--population", "-3"], stdout=io.StringIO(), stderr=err)
        2
        >>> err.getvalue().splitlines()[-1]
        "mutnas evolve: argument --population: expected an integer > 0, got '-3' (see mutnas evolve --help)"
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        out.write(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in _RUNNERS:
        close = difflib.get_close_matches(command, list(_COMMANDS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"commands: {', '.join(_COMMANDS)}"
        err.write(f"mutnas: unknown command {command!r} ({hint})\n")
        return 2
    return _run(command, rest, out, err)


def _run(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    from evolve.errors import EvolveError
    from mutnas.errors import MutnasError

    prefix = f"mutnas {command}"
    try:
        return _RUNNERS[command](argv, out)
    except _HelpShown:
        return 0
    except CommandError as error:
        err.write(f"{prefix}: {_one_line(error)}\n")
        return error.status
    except (EvolveError, MutnasError, OSError) as error:
        err.write(f"{prefix}: {_one_line(error)}\n")
        return 1
    except KeyboardInterrupt:
        err.write(f"{prefix}: interrupted; continue with mutnas resume RUN_DIR\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
