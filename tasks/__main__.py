"""Command line: ``python -m tasks demo [--device cpu|cuda|cuda:N] [--steps N]``."""

from __future__ import annotations

import argparse
import sys

from tinygrad_ee import DeviceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a tiny MLP on two rings with the engine")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--steps", type=int, default=300, help="gradient steps (default: 300)")
    args = parser.parse_args(argv)

    from .demo import train_demo

    try:
        result = train_demo(device=args.device, steps=args.steps)
    except DeviceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"two-ring MLP on {args.device}: loss {result['first_loss']:.3f} -> "
        f"{result['last_loss']:.3f}, accuracy {result['accuracy']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
