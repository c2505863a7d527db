"""Mutate an existing network: widen a stage, insert a layer, remove a block, prune.

Takes a torchvision ResNet-18, traces it once with ``mutnas_torch.mutable`` and then
changes it the way a person doing architecture surgery would, checking after each step
that the outputs are preserved where mutnas promises they are.

Run:  python examples/mutate_existing_network.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torchvision

import mutnas_torch as mt


def report(step: str, mm: mt.MutableModel, x: torch.Tensor, reference: torch.Tensor | None):
    with torch.no_grad():
        out = mm(x)
    kept = (
        "" if reference is None else f"  outputs equal: {torch.allclose(out, reference, atol=1e-4)}"
    )
    print(f"{step:<46} {mm.n_parameters():>11,} parameters{kept}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller input, fewer steps (CI)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    size = 32 if args.quick else 64
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(4, 3, size, size)
    mm = mt.mutable(net, x)
    mm.eval()
    reference = report("traced ResNet-18", mm, x, None)

    # 1. widen layer2 by 25 %: one residual stream, so every conv feeding it follows
    stage = {n: mm.graph[n].nout // 4 for n in mm.layers() if n.startswith("layer2.")}
    mm.resize(stage, relaxed=True)
    report("widened layer2 by 25 % (function preserved)", mm, x, reference)

    # 2. insert an identity-initialised 3x3 conv after layer3.0's first BN + ReLU
    mm.insert_layer("layer3.0.bn1", "conv", kernel_size=3)
    report("inserted a 3x3 conv in layer3.0", mm, x, reference)

    # 3. insert a residual branch (zero at first: exact for any activation)
    mm.insert_residual("layer4.0.bn2", hidden=64, activation="gelu")
    report("inserted a residual branch in layer4.0", mm, x, reference)

    # 4. remove one internal block: the main branch of layer3.1 (its skip is an identity)
    add = next(v.name for v in mm.graph["layer3.1.bn2"].outputs if v.kind == "add")
    branch = [u.name for u in mm.graph[add].inputs].index("layer3.1.bn2")
    mm.remove_branch(add, branch)
    previous = report("removed block layer3.1 (function changes)", mm, x, None)

    # 5. prune 50 % by activation x gradient (first-order Taylor) on a few batches
    taylor = mt.TaylorUtility(mm)
    mm.taylor = taylor
    mm.train()
    for _ in range(2 if args.quick else 8):
        batch = torch.randn(8, 3, size, size)
        labels = torch.randint(0, 1000, (8,))
        torch.nn.functional.cross_entropy(mm(batch), labels).backward()
    mm.eval()
    mm.prune(0.5, utility="taylor")
    taylor.detach()
    out = report("pruned 50 % by activation x gradient", mm, x, None)
    print(f"output shape kept: {tuple(out.shape) == tuple(previous.shape)}")
    mm.verify()
    plain = mm.to_module()
    print(f"plain torch.fx.GraphModule: {type(plain).__name__}, runs: {plain(x).shape}")


if __name__ == "__main__":
    main()
