"""Time and peak memory of building a large PyTorch layer, eagerly or on the meta device.

Each construction runs in a fresh subprocess, so that its peak resident memory is its own:

    python benchmarks/meta_construction.py            # Conv2dTranspose(2048, 2048, 7)
    python benchmarks/meta_construction.py --channels 512 --kernel 3

Prints one line per device: the constructor's wall time and how much the peak RSS grew.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, time
import torch
from convtranspose.torch import Conv2dTranspose
channels, kernel, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
Conv2dTranspose(channels, channels, kernel, has_bias=True, device=device)
elapsed = time.perf_counter() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
print(f"device={device}: {elapsed * 1e3:.2f} ms, peak RSS +{grown / 1024:.1f} MiB")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=2048)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--devices", default="meta,cpu", help="comma-separated devices (default meta,cpu)")
    args = parser.parse_args()
    print(f"Conv2dTranspose({args.channels}, {args.channels}, {args.kernel}, has_bias=True)")
    for device in args.devices.split(","):
        command = [sys.executable, "-c", CHILD, str(args.channels), str(args.kernel), device]
        print(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())


if __name__ == "__main__":
    main()
