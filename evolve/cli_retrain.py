"""``mutnas retrain``: train one model of a run further (or from scratch, wider, deeper).

It writes into the run directory (``retrained/<id>/``), so it holds the run's lock while
it works: it does not run beside a search or resume of the same run. ``--depth`` is at
most :data:`~evolve.cli.MAX_DEPTH` inserted layers and ``--width`` at most
:data:`~evolve.cli.MAX_WIDTH` times the width.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from evolve.cli import (
    MAX_DEPTH,
    MAX_WIDTH,
    CommandError,
    _load_data,
    _model_folder,
    _natural,
    _number,
    _Parser,
    _positive_float,
    _positive_int,
    _require_run,
    _run_options,
    _seed,
    _test_scores,
)

__all__ = ["retrain"]

_depth = _number(int, minimum=0, strict=False, maximum=MAX_DEPTH)
_width = _number(float, minimum=0, strict=True, maximum=MAX_WIDTH)


def _parser() -> _Parser:
    parser = _Parser(
        prog="mutnas retrain",
        description="Train a model of a run further (or from scratch, optionally wider or "
        "deeper) on the training split, then score it on the held-out test split.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", type=_natural, required=True, help="candidate id (report)")
    parser.add_argument("--epochs", type=_positive_float, default=10.0)
    parser.add_argument("--scratch", action="store_true", help="re-initialise all weights")
    parser.add_argument(
        "--width",
        type=_width,
        default=1.0,
        help=f"multiply every hidden layer's width by this (e.g. 2; at most {MAX_WIDTH:g})",
    )
    parser.add_argument(
        "--depth",
        type=_depth,
        default=0,
        help=f"insert this many identity-initialised layers (and activations; at most {MAX_DEPTH})",
    )
    parser.add_argument("--lr", type=_positive_float, default=None, help="default: the model's")
    parser.add_argument("--batch-size", type=_positive_int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser


def retrain(argv: Sequence[str], out: TextIO) -> int:
    """The ``mutnas retrain`` command; returns the exit status (errors raise).

    Example:
        >>> import io
        >>> retrain(["runs/x", "--model", "1", "--depth", "100000"], io.StringIO())
        Traceback (most recent call last):
        evolve.cli.CommandError: argument --depth: expected an integer from 0 to 32, got '100000' (see mutnas retrain --help)
    """
    from evolve.rundir import RunDirectory

    args = _parser().parse_args(argv)
    _require_run(args.run_dir)
    with RunDirectory.open(args.run_dir):  # it writes into the run: one process at a time
        options = _run_options(args.run_dir)
        folder = _model_folder(args.run_dir, args.model)
        record = _record(args.run_dir, args.model)
        splits = _load_data(options)
        if splits.test is None:
            raise CommandError(f"dataset {options['dataset']!r} has no test split to score on")
        mm, hp, changes = _prepared(folder, record, args)
        seconds, scores, target = _train_and_save(mm, splits, hp, args)
        summary = {
            "model": args.model,
            "epochs": args.epochs,
            "scratch": args.scratch,
            "width": args.width,
            "depth": args.depth,
            "hparams": hp.to_dict(),
            "n_parameters": mm.n_parameters(),
            "seconds": round(seconds, 2),
            "test": scores,
            "changes": changes,
        }
        (target / "retrain.json").write_text(json.dumps(summary, indent=1))
    what = "from scratch" if args.scratch else "further"
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    out.write(
        f"model {args.model} trained {what} for {args.epochs:g} epochs "
        f"({mm.n_parameters():,} parameters, {seconds:.1f} s): test {shown}\n"
        f"saved to {target}\n"
    )
    return 0


def _prepared(folder: Path, record: dict | None, args):
    """The model scaled (and reset with ``--scratch``), its settings, what was changed."""
    import torch

    from evolve import checkpoint
    from evolve.candidate import candidate_seed
    from evolve.config import Hyperparams

    mm = checkpoint.load_model(folder)
    torch.manual_seed(candidate_seed(args.seed, args.model, 7))
    changes = _scale(mm, args.width, args.depth)
    if args.scratch:
        for module in mm.module.modules():
            if module is not mm.module and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    hp = Hyperparams.from_dict(record["hparams"]) if record else Hyperparams()
    hp = Hyperparams(
        hp.optimizer, args.lr or hp.lr, args.batch_size or hp.batch_size, hp.weight_decay
    )
    return mm, hp, changes


def _train_and_save(mm, splits, hp, args):
    """Train, test, and save into ``retrained/<id>`` (replacing only an earlier retrain)."""
    import torch

    from evolve import checkpoint

    target = args.run_dir / "retrained" / str(args.model)
    if target.exists() and not (target / "retrain.json").is_file():
        raise CommandError(
            f"{target} exists and was not written by mutnas retrain; move it away first"
        )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seconds = _train(mm, splits, hp, args.epochs, device, seed=args.seed, quiet=args.quiet)
    scores = _test_scores(mm, splits, device)
    target.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_model(mm.cpu(), target)
    return seconds, scores, target


def _record(run_dir: Path, model_id: int) -> dict | None:
    """The candidate's record: from the checkpoint, else from the (checked) log."""
    from evolve import runfiles

    config = runfiles.read_config(run_dir)
    found = runfiles.read_checkpoint(run_dir, config["run_id"], strict=False)
    state = found.state
    for r in state["archive"] + state["population"] + found.records:
        if r["id"] == model_id:
            return r
    return None


def _scale(mm, width: float, depth: int) -> list[str]:
    """Widen every hidden layer by ``width`` and insert ``depth`` layers; what was done."""
    from mutnas.advanced import frozen_vertices

    done = []
    frozen = frozen_vertices(mm.graph)
    if width != 1.0:
        hidden = [v for v in mm.layers("absorb") if v not in frozen]
        deltas = {v: round(mm.graph[v].nout * (width - 1.0)) for v in hidden}
        deltas = {v: d for v, d in deltas.items() if d != 0}
        if deltas:
            try:
                mm.resize(deltas, relaxed=True)
            except Exception as err:
                raise CommandError(f"cannot scale the width by {width:g}: {err}") from None
            done.append(
                f"width x{width:g}: " + ", ".join(f"{v} {mm.graph[v].nout}" for v in deltas)
            )
    hidden = [v for v in mm.layers("absorb") if v not in frozen]
    for i in range(depth):
        if not hidden:
            raise CommandError("the model has no hidden layer to deepen after")
        after = hidden[-1 - (i % len(hidden))]
        try:
            mm.insert_layer(after, "auto", kernel_size=3, name=f"{after}_deeper{i}")
        except Exception as err:
            raise CommandError(f"cannot insert a layer after {after!r}: {err}") from None
        done.append(f"inserted a layer after {after}")
    return done


def _train(mm, splits, hp, epochs: float, device, *, seed: int, quiet: bool) -> float:
    import time

    import torch
    from torch.utils.data import DataLoader

    from evolve.problem import _tensors

    x, y = _tensors(splits.train, "train")
    generator = torch.Generator().manual_seed(seed)
    batch = min(hp.batch_size, len(x))
    loader = DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=batch,
        shuffle=True,
        generator=generator,
        drop_last=len(x) > batch,
    )
    steps = max(1, math.ceil(epochs * len(loader)))
    mm = mm.to(device).train()
    optimizer = hp.make_optimizer(mm.parameters())
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=hp.lr, total_steps=steps, pct_start=0.25
    )
    classify = splits.task == "classification"
    loss_fn = torch.nn.CrossEntropyLoss() if classify else torch.nn.MSELoss()
    bar = None
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="retrain", unit="step", leave=False)
    start, step = time.perf_counter(), 0
    while step < steps:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            outputs = mm(xb)
            if splits.task != "classification":
                yb = yb.reshape(outputs.shape).float()
            loss = loss_fn(outputs, yb)
            if not torch.isfinite(loss):
                raise CommandError(
                    f"the loss became {loss.item()} at step {step}; try a smaller --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if step >= steps:
                break
    if bar is not None:
        bar.close()
    mm.eval()
    return time.perf_counter() - start
