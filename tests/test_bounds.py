"""Engines that stay bounded (issue 21): what PyTorch's kernels cannot take is computed another way.

Each request runs in a fresh subprocess with an address-space limit and a timeout, so a regression
(a crash inside a kernel, an allocation of gigabytes, minutes of work) fails the test instead of
taking the suite down with it.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

# A prelude for the subprocesses: the library under test first on the path, one thread, and an
# address-space limit of the process's size after the imports plus ``extra`` bytes.
_PRELUDE = """
import json, resource, sys
sys.path.insert(0, {root!r})
import numpy as np
import torch
import convtranspose as ct
from convtranspose.torch import conv2d_transpose
torch.set_num_threads(1)
with open("/proc/self/statm") as f:
    _size = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (_size + {extra}, _size + {extra}))
"""


def run_bounded(body: str, extra: int = 1 << 30, timeout: float = 60) -> dict:
    """Run ``body`` after the prelude in a subprocess; it prints one JSON line, returned here."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to bound the subprocess's memory")
    code = _PRELUDE.format(root=str(ROOT), extra=extra) + textwrap.dedent(body)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish in {timeout} s")
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# Forward and backward of one request, against the NumPy engine (which reads the window alone).
_CHECK = """
def check(x_shape, w_shape, kwargs, dtype, tol):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    xt, wt = (torch.from_numpy(a).to(dtype).requires_grad_() for a in (x, w))
    try:
        y = conv2d_transpose(xt, wt, **kwargs)
        dx, dw = torch.autograd.grad(y, (xt, wt), torch.ones_like(y))
    except ValueError:
        return "refused"
    except RuntimeError as error:
        return "torch's RuntimeError: " + str(error)[:200]
    ref = ct.conv2d_transpose(x, w, **kwargs)
    rdx, rdw, _ = ct.conv2d_transpose_backward(x, w, np.ones(ref.shape), **kwargs)
    for got, want in ((y, ref), (dx, rdx), (dw, rdw)):
        if not np.allclose(got.detach().double().numpy(), want, rtol=tol, atol=tol):
            return "wrong"
    return "computed"
"""


def test_products_past_32_bits_compute_exactly_or_are_refused():
    """Found by the adversarial round: PyTorch's CPU kernels hold stride, padding, dilation and
    kernel size as 32-bit ints in their shape check (``2 * padding`` and ``dilation * (kernel - 1)
    + 1`` computed in 32 bits), and raised their own RuntimeError on 271 of 940 such requests
    (oneDNN's path also crashed the process on a stride of 16384). None may reach the kernel: on
    PyTorch's slow path (float64, one channel) and its oneDNN path (float32, a batch of two)."""
    result = run_bounded(
        _CHECK
        + """
import collections, itertools
big = 2**31
values = (2, 2**30, 2**30 + 1, big // 3 + 1, big - 1)
outcomes = collections.Counter()
for (batch, channels, dtype), n, k, s, d in itertools.product(
    ((1, 1, torch.float64), (2, 2, torch.float32)), (2, 3), (2, 3), values, values
):
    full = (n - 1) * s + d * (k - 1) + 1
    for before in ((full - 3) // 2, full - 3, 0):
        kwargs = dict(stride=(1, s), dilation=(1, d), pad_mode="pad", padding=(0, 0, before, full - 3 - before))
        outcome = check((batch, channels, 2, n), (channels, channels, 1, k), kwargs, dtype, 1e-4)
        outcomes[outcome if outcome in ("computed", "refused") else f"{outcome} for {kwargs}"] += 1
print(json.dumps(outcomes))
"""
    )
    assert set(result) <= {"computed", "refused"}, result
    assert result.get("computed", 0) == sum(result.values()), result  # every one of them fits the memory limit


def test_the_largest_strides_and_dilations_compute():
    """2**31 - 1 is the largest stride PyTorch takes, and refusing it failed no test; 2**31 was
    refused. Every value is computed now (tap by tap), as the NumPy engine computes it."""
    cases = []
    for name in ("stride", "dilation"):
        for value in (2**31 - 1, 2**31, 2**40):
            size = value + 1  # the uncropped width: a stride (or a dilation) plus one tap
            cases.append({name: (1, value), "pad_mode": "pad", "padding": (0, 0, size // 2, size - size // 2 - 1)})
    body = (
        f"print(json.dumps([check((2, 2, 2, 2), (2, 2, 1, 2), kwargs, torch.float32, 1e-5) for kwargs in {cases!r}]))"
    )
    assert run_bounded(_CHECK + body, timeout=30) == ["computed"] * len(cases)


_BOUNDED = """
import time
shapes = []
for x_shape, w_shape, kwargs in CASES:
    start = time.perf_counter()
    x = torch.randn(x_shape, requires_grad=True)
    w = torch.randn(w_shape, requires_grad=True)
    y = conv2d_transpose(x, w, **kwargs)
    torch.autograd.grad(y.sum(), (x, w))
    shapes.append(list(y.shape))
    del x, w, y
print(json.dumps(shapes))
"""


def test_a_huge_stride_or_dilation_costs_what_its_output_costs():
    """Found by the adversarial round: stride (10**5, 1) 'same' with a 4-tap kernel took 42 s in
    PyTorch's CPU kernel, and a dilated 4-tap kernel peaked at 14.1 GiB for a 168-byte output.
    Forward and backward of all of them run in a 1 GiB address-space allowance and a 60 s timeout
    here (about 2 s on one core, measured)."""
    cases = [
        ((2, 2, 2, 2), (2, 2, 2, 2), dict(stride=(10**5, 1)), [2, 2, 200000, 2]),
        ((2, 2, 2, 2), (2, 2, 4, 1), dict(stride=(10**5, 1)), [2, 2, 200000, 2]),
        ((2, 3, 2, 2), (3, 3, 4, 4), dict(dilation=10**4, pad_mode="pad", padding=15000), [2, 3, 2, 2]),
        ((2, 2, 2, 2), (2, 2, 4, 4), dict(stride=512, pad_mode="same"), [2, 2, 1024, 1024]),
    ]
    body = f"CASES = {[case[:3] for case in cases]!r}\n" + _BOUNDED
    assert run_bounded(body, extra=1 << 30, timeout=60) == [case[3] for case in cases]


_JAX_BOUNDED = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import jax
import convtranspose.jax as cj
with open("/proc/self/statm") as f:
    _size = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (_size + {extra}, _size + {extra}))
_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
x = rng.standard_normal({x_shape}).astype(np.float32)
w = rng.standard_normal({w_shape}).astype(np.float32)
start = time.perf_counter()
def loss(x, w):
    return (cj.conv2d_transpose(x, w, **{kwargs!r}) ** 2).sum()
y = cj.conv2d_transpose(x, w, **{kwargs!r})
dx, dw = jax.grad(loss, argnums=(0, 1))(x, w)
jax.block_until_ready((y, dx, dw))
rise_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _rss) // 1024
print(json.dumps(dict(shape=list(y.shape), seconds=round(time.perf_counter() - start, 2), rise_mib=rise_mib)))
"""


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, out_shape",
    [
        ((1, 2, 2, 2), (2, 2, 2, 2), dict(stride=512), [1, 2, 1024, 1024]),
        ((1, 1, 2, 2), (1, 1, 3, 3), dict(stride=(512, 300)), [1, 1, 1024, 600]),
        ((1, 4, 8, 8), (4, 4, 48, 48), dict(stride=2, pad_mode="pad", padding=7), [1, 4, 48, 48]),
        ((1, 2, 4, 4), (2, 2, 48, 48), dict(stride=2, group=2, pad_mode="pad", padding=20), [1, 4, 14, 14]),
    ],
    ids=["stride 512 same", "depthwise stride 512x300 same", "48x48 kernel", "48x48 depthwise kernel"],
)
def test_jax_trace_and_compile_follow_the_output_and_the_work(x_shape, w_shape, kwargs, out_shape):
    """Found by the adversarial round: the JAX engine built one op per stride phase (stride 512
    'same' on a 2x2 input: 31 s and 1.15 GiB to trace and compile) and one per kernel tap (a 48x48
    kernel with its gradient: 27-44 s, 2.2-3.0 GiB for a 37 KB output). Forward and gradient run
    in a 60 s timeout here (2-3 s each, measured under load), raising the peak memory after the
    imports by less than 400 MiB (XLA's threads reserve address space, so the address-space limit
    is a generous 4 GiB safety net only)."""
    pytest.importorskip("jax")
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc to bound the subprocess's memory")
    code = _JAX_BOUNDED.format(root=str(ROOT), extra=4 << 30, x_shape=x_shape, w_shape=w_shape, kwargs=kwargs)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("did not finish in 60 s")
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == out_shape
    assert result["rise_mib"] < 400, result
