"""Time every JAX forward route against ``lax.conv_general_dilated``, and the route the engine chooses.

The JAX engine picks one forward formulation per spec and input shape
(``convtranspose._engines.jax.choose_routes``). This script prints, for each benchmark case and a
set of shapes that stress the choice (5x5 kernels at strides 2 and 3, 'same' on odd sizes,
asymmetric 'pad', kernels shorter than the stride), the forward time of every applicable route,
of ``lax.conv_general_dilated`` + crop as a JAX user writes it (``bench.py``'s ``jax`` row), and
the ratio of the chosen route to lax. Every route is checked against the tests' float64 oracle
before it is timed.

Timing: each route's jitted forward runs in its own block (warm-up, then samples; see
``bench.measure``) and the blocks repeat ``--rounds`` times so that all of them spread over the
same stretch of time. Medians are quoted. Run on a quiet machine::

    .venv/bin/python benchmarks/jax_routes.py            # every case
    .venv/bin/python benchmarks/jax_routes.py --case tiny --case k5_s2_same_odd
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import numpy as np  # noqa: E402

from cases import CASES, EXTRA_CASES, Case  # noqa: E402

# Shapes where the adversarial round found the chosen route slower than lax (5x5, strides 2 and 3)
# and their neighbours: more channels, more pixels, even sizes.
ROUTE_CASES = [
    Case("k5_s2_same_odd", 2, 16, 13, 11, 16, 5, 2, "same", note="5x5 stride 2 'same', odd sizes"),
    Case("k5_s3_same_odd", 2, 16, 13, 11, 16, 5, 3, "same", note="5x5 stride 3 'same', odd sizes"),
    Case("k5_s2_pad_asym", 2, 16, 12, 10, 16, 5, 2, "pad", (2, 1, 0, 3), note="5x5 stride 2 asymmetric 'pad'"),
    Case("k5_s3_pad_asym", 2, 16, 12, 10, 16, 5, 3, "pad", (1, 3, 2, 0), note="5x5 stride 3 asymmetric 'pad'"),
    Case("k5_s2_64ch", 2, 64, 32, 32, 64, 5, 2, "same", note="5x5 stride 2, 64 channels"),
    Case("k5_s3_64ch", 2, 64, 21, 21, 64, 5, 3, "same", note="5x5 stride 3, 64 channels"),
    Case("k5_s2_3ch_big", 1, 32, 64, 64, 3, 5, 2, "same", note="5x5 stride 2 to 3 channels"),
    Case("k3_s2_8ch", 4, 8, 24, 24, 8, 3, 2, "same", note="3x3 stride 2, 8 channels"),
    Case("k4_s2_wide", 8, 256, 8, 8, 128, 4, 2, "pad", 1, note="4x4 stride 2, many channels, small image"),
    Case("k2_s2_small", 8, 32, 16, 16, 32, 2, 2, "valid", note="2x2 stride 2 (U-Net), small"),
    Case("k7_s2", 2, 32, 16, 16, 32, 7, 2, "same", note="7x7 stride 2"),
    Case("k3_s1_16ch", 2, 16, 32, 32, 16, 3, 1, "same", note="3x3 stride 1, 16 channels"),
    Case("k3_s1_tiny", 1, 8, 9, 9, 8, 3, 1, "same", dilation=2, note="3x3 dilation 2, tiny"),
    Case("k7_s2_64ch", 2, 64, 16, 16, 64, 7, 2, "same", note="7x7 stride 2, 64 channels"),
    Case("k3_s3_small", 2, 16, 8, 8, 16, 3, 3, "valid", note="3x3 stride 3, small"),
    Case("k5_s2_w28", 2, 16, 28, 28, 16, 5, 2, "same", note="5x5 stride 2 on 28 columns"),
    Case("k6_s2_w20", 2, 32, 20, 20, 32, 6, 2, "pad", 2, note="6x6 stride 2 on 20 columns"),
    Case("k4_s4_w12", 4, 32, 12, 12, 16, 4, 4, "valid", note="4x4 stride 4 (no overlap)"),
    Case("k3_s2_w48", 2, 32, 48, 40, 32, 3, 2, "pad", 1, note="3x3 stride 2, larger image"),
]

ALL = {case.name: case for case in CASES + EXTRA_CASES + ROUTE_CASES}


def routes_for(case: Case) -> list[str]:
    """The forward routes that apply to ``case`` (``taps`` is for one input channel per group)."""
    names = ["col2im", "col2im_nhwc", "conv"]
    if case.cin == case.group:
        names.append("taps")
    return names


def time_case(case: Case, jax_row: bench.Jax, rounds: int, repeat: int) -> dict:
    """Median forward ms of lax and of every route, and the chosen route, for one case."""
    import jax

    from convtranspose._engines import jax as engine
    from convtranspose.spec import spec_from_weight

    data = bench.make_data(case, seed=0)
    x, w, b = (jax.device_put(data[k]) for k in "xwb")
    args = case.kwargs()
    spec = spec_from_weight(
        w.shape,
        args["stride"],
        args["pad_mode"],
        args["padding"],
        args["output_padding"],
        args["dilation"],
        args["group"],
        True,
    )
    chosen = engine.choose_routes(spec, x.shape).forward
    jobs = [("lax", jax.jit(lambda x, w, b: jax_row._forward(case, x, w, b)))]
    for route in routes_for(case):
        routes = engine.Routes(route, "conv", "conv")
        jobs.append((route, jax.jit(lambda x, w, b, routes=routes: engine.forward(x, w, b, spec, routes))))
    expected = np.asarray(jobs[0][1](x, w, b), dtype=np.float64)
    for name, fn in jobs[1:]:
        got = np.asarray(fn(x, w, b), dtype=np.float64)
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"{case.name}: route {name} disagrees with lax (max {np.abs(got - expected).max()})")
    timed = bench.measure(
        [(name, lambda fn=fn: fn(x, w, b).block_until_ready()) for name, fn in jobs],
        repeat=repeat,
        warmup=5,
        rounds=rounds,
    )
    return {"chosen": chosen, **{name: statistics.median(samples) * 1e3 for name, (samples, _) in timed.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=sorted(ALL), help="only these cases (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="blocks of samples per route (default 3)")
    parser.add_argument("--repeat", type=int, default=15, help="samples per block (default 15)")
    opts = parser.parse_args(argv)
    jax_row = bench.Jax()
    opts.need_x64 = False
    print("jax", jax_row.setup(opts))
    cases = [ALL[name] for name in opts.case] if opts.case else [c for c in ALL.values() if c.dtype == "float32"]
    columns = ("lax ms", "col2im", "nhwc", "conv", "taps")
    header = f"{'case':<16} {' '.join(f'{c:>8}' for c in columns)}  {'chosen':<12} {'/lax':>6} {'best/lax':>8}"
    print(header)
    print("-" * len(header))
    ratios = []
    for case in cases:
        t = time_case(case, jax_row, opts.rounds, opts.repeat)
        best = min(v for k, v in t.items() if k not in ("chosen", "lax"))
        ratio = t[t["chosen"]] / t["lax"]
        ratios.append(ratio)
        cells = [f"{t[k]:8.3f}" if k in t else f"{'-':>8}" for k in ("col2im", "col2im_nhwc", "conv", "taps")]
        print(
            f"{case.name:<16} {t['lax']:8.3f} {' '.join(cells)}  {t['chosen']:<12} {ratio:6.2f} {best / t['lax']:8.2f}",
            flush=True,
        )
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(f"\nchosen/lax: geometric mean {geo:.2f}, worst {max(ratios):.2f} over {len(ratios)} cases")


if __name__ == "__main__":
    main()
