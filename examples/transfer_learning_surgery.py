"""Transfer-learning surgery: reuse a trained CNN for a new task at a FLOP budget.

1. Train a small CNN on task A (scikit-learn digits 0-4).
2. Replace its head for task B (all ten digits) and trace it again.
3. Prune it to several FLOP budgets by activation x gradient on task B, fine-tune each
   briefly, and report test accuracy against FLOPs.

Run:  python examples/transfer_learning_surgery.py [--quick]
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

import mutnas_torch as mt
from evolve.data import load_dataset
from mutnas_torch.pruning import count_flops


def subset(dataset, labels):
    x, y = dataset.tensors
    keep = torch.isin(y, torch.tensor(labels))
    return x[keep], y[keep]


def train(model, x, y, epochs: int, lr: float = 3e-3) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and budgets (CI)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    epochs = 3 if args.quick else 15
    data = load_dataset("digits", seed=0)
    xa, ya = subset(data.train, [0, 1, 2, 3, 4])
    xb, yb = data.train.tensors
    xt, yt = data.test.tensors

    # 1. task A: five classes
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 5),
    )  # fmt: skip
    train(net, xa, ya, epochs)
    xta, yta = subset(data.test, [0, 1, 2, 3, 4])
    print(f"task A (digits 0-4): test accuracy {accuracy(net, xta, yta):.3f}")

    # 2. task B: a new 10-class head, then trace again
    net[-1] = nn.Linear(64 * 4 * 4, 10)
    mm = mt.mutable(net, xb[:8])
    train(mm, xb, yb, max(1, epochs // 3))
    full = count_flops(mm) / 8
    print(f"task B (0-9) after head swap: {accuracy(mm, xt, yt):.3f} at {full:,.0f} FLOPs/sample")

    # 3. prune to FLOP budgets by activation x gradient, fine-tune, report
    print(f"{'budget':>8} {'FLOPs/sample':>13} {'params':>8} {'before ft':>10} {'after ft':>9}")
    for share in (0.5, 0.25) if args.quick else (0.75, 0.5, 0.25, 0.1):
        pruned = copy.deepcopy(mm)
        pruned.taylor = mt.TaylorUtility(pruned)
        pruned.train()
        for idx in torch.randperm(len(xb))[:512].split(64):
            nn.functional.cross_entropy(pruned(xb[idx]), yb[idx]).backward()
        pruned.eval()
        pruned.prune(flops=share * full * 8, utility="taylor")
        pruned.taylor.detach()
        before = accuracy(pruned, xt, yt)
        train(pruned, xb, yb, max(1, epochs // 3))
        flops = count_flops(pruned) / 8
        print(
            f"{share:>8.0%} {flops:>13,.0f} {pruned.n_parameters():>8,} "
            f"{before:>10.3f} {accuracy(pruned, xt, yt):>9.3f}"
        )


if __name__ == "__main__":
    main()
