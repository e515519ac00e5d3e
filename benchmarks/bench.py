"""Time MindSpore-semantics Conv2dTranspose engines side by side, in one run, on named cases.

Engines: ``ours`` (``convtranspose``, NumPy), ``torch`` (``F.conv_transpose2d``), ``jax``
(``lax.conv_general_dilated``), ``onnxrt`` (a one-node ONNX ``ConvTranspose``, forward only), and the
``gemm`` row: BLAS matrix products with the same multiply-adds, a yardstick for the case on this
machine. Every peer computes MindSpore's result (``docs/mindspore-behavior.md``): the full transposed
convolution, a crop or zero extension per pad_mode, the bias, then output_padding zero rows.

nn.Conv2d cases (``cases.CONV2D_CASES``, layers of real encoders) run the same way with the
library's Conv2d in each engine (``ours``: ``convtranspose.conv2d``, ``ours_pt``:
``convtranspose.torch.conv2d``, ``ours_jx``: ``convtranspose.jax.conv2d``) against what a user of
each framework writes today: ``F.pad`` for TensorFlow's 'same' split then ``F.conv2d`` (the
``torch`` row), ``lax.conv_general_dilated`` with the same explicit padding (the ``jax`` row); the
gemm row is the im2col product. A table of their ratios and geometric means closes the run.

Before anything is timed, every engine is checked against the tests' float64 oracle,
``tests/reference.py`` (which shares no code with any engine, and is itself checked against
MindSpore's recorded cases by ``tests/test_reference.py``). An engine that disagrees prints FAIL and
is not timed.

Usage::

    python benchmarks/bench.py                      # the eight cases of cases.CASES, the six of CONV2D_CASES
    python benchmarks/bench.py --kind conv2d        # the nn.Conv2d cases only
    python benchmarks/bench.py --quick --extra      # smoke run, plus cases.EXTRA_CASES
    python benchmarks/bench.py --cases tiny,sr_up --repeat 20 --json out.json --plot out.png
    python benchmarks/bench.py --check-only --extra # correctness of every engine, no timing

See ``benchmarks/README.md`` for what the columns mean.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the tests' float64 oracle
import reference  # noqa: E402
from cases import ALL_CASES, CASES, CONV2D_CASES, CONV2D_GEMM_BOUND, EXTRA_CASES  # noqa: E402

# |got - ref| <= TOL * (1 + max|ref|), per array.
TOL = {"float16": 2e-3, "float32": 1e-4, "float64": 1e-9}
PEERS = ("torch", "jax")  # the bar: ours vs the faster of these, both directions
REFERENCE_FORWARD = "onnxrt"  # the fastest forward we know: reported as /ort, not part of the bar


# --------------------------------------------------------------------------------------------
# Engines. setup() imports the framework (ImportError -> the engine is skipped) and returns its
# version; prepare() returns a Runner whose forward/backward run once and wait for the result.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Runner:
    forward: object  # () -> result, synchronised
    backward: object = None  # () -> (dx, dw, db), synchronised; None: not provided
    to_numpy: object = np.asarray  # result -> ndarray (applied to each gradient too)
    peak: object = None  # (fn) -> bytes, or None: no measurement available


def _tracemalloc_peak(fn):
    """Peak bytes newly allocated (NumPy and Python allocations) while fn runs once."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        tracemalloc.stop()
    return peak


class Ours:
    name = "ours"

    def setup(self, opts):
        import convtranspose

        for attr in ("conv2d_transpose", "conv2d_transpose_backward"):
            if not hasattr(convtranspose, attr):
                raise ImportError(f"convtranspose has no {attr} yet")
        self.ct = convtranspose
        return getattr(convtranspose, "__version__", "?")

    def prepare(self, case, data):
        kw = case.kwargs()
        x, w, b, g = data["x"], data["w"], data["b"], data["g"]
        return Runner(
            forward=lambda: self.ct.conv2d_transpose(x, w, b, **kw),
            backward=lambda: self.ct.conv2d_transpose_backward(x, w, g, **kw),
            peak=self._peak,
        )

    def prepare_conv2d(self, case, data):
        if not hasattr(self.ct, "conv2d"):
            raise ImportError("convtranspose has no conv2d yet")
        kw = case.kwargs()
        x, w, b, g = data["x"], data["w"], data["b"], data["g"]
        return Runner(
            forward=lambda: self.ct.conv2d(x, w, b, **kw),
            backward=lambda: self.ct.conv2d_backward(x, w, g, **kw),
            peak=self._peak,
        )

    def _peak(self, fn):
        """tracemalloc's peak of one call, plus the scratch memory the engine keeps between
        calls (allocated before tracing started, so tracemalloc alone would miss it)."""
        from convtranspose._engines import numpy as engine

        engine.release_workspace()
        fn()  # fill the workspace for this case
        return _tracemalloc_peak(fn) + engine.workspace_bytes()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr (the torch profiler prints start/stop lines there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Torch:
    name = "torch"

    def setup(self, opts):
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(opts.threads)
        self.torch, self.F = torch, F
        return f"{torch.__version__} ({torch.get_num_threads()} threads)"

    def _forward(self, case, x, w, b):
        F = self.F
        ah, aw = case.windows()
        y = F.conv_transpose2d(
            x, w, None, stride=case.stride, padding=0, output_padding=0, groups=case.group, dilation=case.dilation
        )
        crop = (aw.crop_before, aw.crop_after, ah.crop_before, ah.crop_after)
        if any(crop):  # negative pad crops, positive pad appends zeros
            y = F.pad(y, tuple(-c for c in crop))
        y = y + b.view(1, -1, 1, 1)
        if ah.output_padding or aw.output_padding:
            y = F.pad(y, (0, aw.output_padding, 0, ah.output_padding))
        return y

    def _conv2d(self, case, x, w, b):
        """What a PyTorch user writes for nn.Conv2d: ``F.pad`` for TensorFlow's 'same' split, then ``F.conv2d``."""
        (top, bottom), (left, right) = case.explicit_padding()
        if top or bottom or left or right:
            x = self.F.pad(x, (left, right, top, bottom))
        return self.F.conv2d(x, w, b, stride=case.stride, dilation=case.dilation, groups=case.group)

    def prepare(self, case, data):
        return self._runner(lambda x, w, b: self._forward(case, x, w, b), data)

    def prepare_conv2d(self, case, data):
        return self._runner(lambda x, w, b: self._conv2d(case, x, w, b), data)

    def _runner(self, f, data):
        """Runner for ``f(x, w, b)``: the forward under no_grad, the backward by autograd of sum(y * g)."""
        torch = self.torch
        x, w, b, g = (torch.from_numpy(data[k]) for k in "xwbg")

        def forward():
            with torch.no_grad():
                return f(x, w, b)

        # Backward: build the graph once, then time torch.autograd.grad on it (retain_graph=True),
        # so the timing holds the backward kernels only.
        leaves = tuple(t.clone().requires_grad_() for t in (x, w, b))
        y = f(*leaves)

        def backward():
            return torch.autograd.grad(y, leaves, g, retain_graph=True)

        return Runner(forward, backward, to_numpy=lambda t: t.detach().numpy(), peak=self._peak)

    def _peak(self, fn):
        """Peak bytes from torch.profiler's allocation records (allocator level, op granularity)."""
        from torch.profiler import ProfilerActivity, profile

        gc.collect()
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = fn()
        del result
        steps = []
        for ev in prof.events():
            delta = ev.cpu_memory_usage if ev.name == "[memory]" else ev.self_cpu_memory_usage
            if delta:  # allocations at the op's start, frees at its end
                steps.append((ev.time_range.start if delta > 0 else ev.time_range.end, delta))
        level = peak = 0
        for _, delta in sorted(steps):
            level += delta
            peak = max(peak, level)
        return peak


class _Library:
    """Mixin: the library's engine built on a framework, timed exactly as that framework's row
    (``baseline``), whose raw operation + crop it is compared with in the summary."""

    module = baseline = ""

    def setup(self, opts):
        version = super().setup(opts)
        module = importlib.import_module(self.module)
        self.conv2d_transpose = module.conv2d_transpose
        self.conv2d = getattr(module, "conv2d", None)
        return version

    def _forward(self, case, x, w, b):
        return self.conv2d_transpose(x, w, b, **case.kwargs())

    def prepare_conv2d(self, case, data):
        if self.conv2d is None:
            raise ImportError(f"{self.module} has no conv2d yet")
        return super().prepare_conv2d(case, data)

    def _conv2d(self, case, x, w, b):
        return self.conv2d(x, w, b, **case.kwargs())


class OursTorch(_Library, Torch):
    """``convtranspose.torch.conv2d_transpose`` against raw ``F.conv_transpose2d`` + crop, and
    ``convtranspose.torch.conv2d`` against ``F.pad`` + ``F.conv2d``."""

    name, module, baseline = "ours_pt", "convtranspose.torch", "torch"


class Jax:
    name = "jax"

    def setup(self, opts):
        import jax

        if opts.need_x64:
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax import lax

        self.jax, self.jnp, self.lax = jax, jnp, lax
        return f"{jax.__version__} ({jax.default_backend()}, {jax.device_count()} device)"

    def _forward(self, case, x, w, b):
        lax, jnp = self.lax, self.jnp
        group, (cin, cout_g, kh, kw) = case.group, w.shape
        sh, sw = (case.stride,) * 2 if isinstance(case.stride, int) else case.stride
        dh, dw = (case.dilation,) * 2 if isinstance(case.dilation, int) else case.dilation
        keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        # (Cin, Cout/g, kH, kW) -> OIHW (Cout, Cin/g, kH, kW), block g of O reads block g of I; flip.
        rhs = w.reshape(group, cin // group, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)
        rhs = rhs.reshape(group * cout_g, cin // group, kh, kw)[:, :, ::-1, ::-1]
        y = lax.conv_general_dilated(
            x,
            rhs,
            window_strides=(1, 1),
            padding=((keh - 1, keh - 1), (kew - 1, kew - 1)),
            lhs_dilation=(sh, sw),
            rhs_dilation=(dh, dw),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=group,
            precision=lax.Precision.HIGHEST,
        )
        ah, aw = case.windows()
        zero = jnp.zeros((), y.dtype)
        y = lax.pad(
            y, zero, ((0, 0, 0), (0, 0, 0), (-ah.crop_before, -ah.crop_after, 0), (-aw.crop_before, -aw.crop_after, 0))
        )
        y = y + b[None, :, None, None]
        return lax.pad(y, zero, ((0, 0, 0), (0, 0, 0), (0, ah.output_padding, 0), (0, aw.output_padding, 0)))

    def _conv2d(self, case, x, w, b):
        """nn.Conv2d as a JAX user writes it: ``lax.conv_general_dilated`` with explicit (TensorFlow) padding."""
        lax = self.lax
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=(case.stride,) * 2 if isinstance(case.stride, int) else case.stride,
            padding=case.explicit_padding(),
            rhs_dilation=(case.dilation,) * 2 if isinstance(case.dilation, int) else case.dilation,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=case.group,
            precision=lax.Precision.HIGHEST,
        )
        return y + b[None, :, None, None]

    def prepare(self, case, data):
        return self._runner(lambda x, w, b: self._forward(case, x, w, b), data)

    def prepare_conv2d(self, case, data):
        return self._runner(lambda x, w, b: self._conv2d(case, x, w, b), data)

    def _runner(self, f, data):
        """Runner for ``f(x, w, b)``: jit of f, and jit of its vjp with g."""
        jax = self.jax
        x, w, b, g = (jax.device_put(data[k]) for k in "xwbg")
        fwd = jax.jit(f)
        bwd = jax.jit(lambda x, w, b, g: jax.vjp(f, x, w, b)[1](g))  # forward part is dead code: XLA drops it
        return Runner(
            forward=lambda: fwd(x, w, b).block_until_ready(), backward=lambda: jax.block_until_ready(bwd(x, w, b, g))
        )


class OursJax(_Library, Jax):
    """``convtranspose.jax.conv2d_transpose`` (a custom_vjp) against ``lax.conv_general_dilated`` +
    crop and its autodiff backward, and ``convtranspose.jax.conv2d`` against ``lax.conv_general_dilated``
    with the same explicit padding."""

    name, module, baseline = "ours_jx", "convtranspose.jax", "jax"


class OnnxRuntime:
    name = "onnxrt"

    def setup(self, opts):
        import onnx
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        self.onnx, self.ort, self.threads = onnx, ort, opts.threads
        return f"{ort.__version__} (onnx {onnx.__version__}, {opts.threads} threads)"

    def graph(self, case, data):
        """One ConvTranspose node; weight and bias are initializers.

        MindSpore's crop is the node's ``pads`` (all >= 0 here); the zero extension of 'same'/'valid'
        when k_eff < stride is the node's ``output_padding`` (rows past the full result: no kernel
        term, but the bias, exactly as MindSpore). Only MindSpore's own output_padding rows (zeros,
        no bias) are added around the session, in NumPy.
        """
        from onnx import helper, numpy_helper

        ah, aw = case.windows()
        _, _, kh, kw = case.weight_shape
        stride = (case.stride,) * 2 if isinstance(case.stride, int) else case.stride
        dilation = (case.dilation,) * 2 if isinstance(case.dilation, int) else case.dilation
        node = helper.make_node(
            "ConvTranspose",
            ["x", "w", "b"],
            ["y"],
            kernel_shape=[kh, kw],
            strides=list(stride),
            dilations=list(dilation),
            group=case.group,
            pads=[ah.crop_before, aw.crop_before, max(ah.crop_after, 0), max(aw.crop_after, 0)],
            output_padding=[max(-ah.crop_after, 0), max(-aw.crop_after, 0)],
        )
        elem = helper.np_dtype_to_tensor_dtype(data["x"].dtype)
        n, cout, hw, ww = case.y_shape
        graph = helper.make_graph(
            [node],
            "conv2d_transpose",
            [helper.make_tensor_value_info("x", elem, list(case.x_shape))],
            [helper.make_tensor_value_info("y", elem, [n, cout, hw - ah.output_padding, ww - aw.output_padding])],
            initializer=[numpy_helper.from_array(data["w"], "w"), numpy_helper.from_array(data["b"], "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # old enough for any onnxruntime that knows opset 17
        self.onnx.checker.check_model(model)
        return model

    def prepare(self, case, data):
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        sess = ort.InferenceSession(
            self.graph(case, data).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        ah, aw = case.windows()
        x = data["x"]
        extend = ((0, 0), (0, 0), (0, ah.output_padding), (0, aw.output_padding))

        def forward():
            y = sess.run(None, {"x": x})[0]
            return np.pad(y, extend) if ah.output_padding or aw.output_padding else y

        return Runner(forward)


ENGINES = {e.name: e for e in (Ours(), Torch(), OursTorch(), Jax(), OursJax(), OnnxRuntime())}


# --------------------------------------------------------------------------------------------
# GEMM limit: the case's multiply-adds as BLAS products on the same NumPy.
# --------------------------------------------------------------------------------------------


def gemm_jobs(case, rng):
    """The gemm row's products: forward and backward, each a () -> None, and a label.

    Forward: A (g, M, K) @ B (g, K, Ncol) with (g, M, K, Ncol) = ``case.gemm_dims()``, exactly the
    case's multiply-adds: for a transposed case the product a col2im method needs before its
    scatter, (N*H*W, Cin/g) @ (Cin/g, Cout/g*kH*kW); for a Conv2d case the im2col product,
    (N*H_out*W_out, Cin/g*kH*kW) @ (Cin/g*kH*kW, Cout/g). Backward: the two products of its
    gradient, C @ B^T and A^T @ C (twice the MACs; dbias is negligible). g = 1 is one 2-D
    matmul; groups are one stacked np.matmul. Outputs are preallocated (out=). float16 has no BLAS
    in NumPy, so float16 cases time the float32 product.
    """
    g, m, k, cols = case.gemm_dims()
    dtype = np.float32 if case.dtype == "float16" else np.dtype(case.dtype)
    shape = (lambda *s: s) if g > 1 else (lambda *s: s[1:])
    a = rng.standard_normal(shape(g, m, k)).astype(dtype)
    b = rng.standard_normal(shape(g, k, cols)).astype(dtype)
    c = rng.standard_normal(shape(g, m, cols)).astype(dtype)
    out_c, out_dx, out_dw = np.empty_like(c), np.empty_like(a), np.empty_like(b)
    bt, at = np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2)

    def backward():
        np.matmul(c, bt, out=out_dx)
        np.matmul(at, c, out=out_dw)

    label = f"{'%d x ' % g if g > 1 else ''}({m}x{k})@({k}x{cols}) {np.dtype(dtype).name}"
    return (lambda: np.matmul(a, b, out=out_c)), backward, label


# --------------------------------------------------------------------------------------------
# Checking and timing.
# --------------------------------------------------------------------------------------------


def compare(got, ref, dtype):
    """Worst err / bound over the arrays (<= 1 passes), and a message for the worst one."""
    tol, worst, msg = TOL[dtype], 0.0, ""
    for name, a, r in zip(("dx", "dweight", "dbias") if len(ref) == 3 else ("y",), got, ref):
        a = np.asarray(a)
        if a.shape != r.shape or a.dtype != np.dtype(dtype):
            return math.inf, f"{name}: got {a.dtype}{a.shape}, expected {dtype}{r.shape}"
        bound = tol * (1 + float(np.abs(r).max(initial=0.0)))
        err = float(np.abs(a.astype(np.float64) - r).max(initial=0.0))
        if not np.isfinite(err):
            return math.inf, f"{name}: not finite"
        if err / bound > worst:
            worst, msg = err / bound, f"{name}: max|err| {err:.2e}, bound {tol:g}*(1+max|ref|) = {bound:.2e}"
    return worst, msg


def measure(jobs, repeat, warmup, settle=0.1, rounds=1):
    """Time each (key, fn) in its own block: warm-up, then `repeat` samples; all of that `rounds` times.

    Not round-robin: on a small machine the thread pools of the engine that ran last (ONNX Runtime
    and XLA spin, OpenMP and OpenBLAS wake up slowly) slow the next engine's first calls by up to
    milliseconds. So each block starts with at least `warmup` calls and `settle` seconds of calls.
    A sample is one call, or the mean of `inner` back-to-back calls when one call takes under
    1 ms (inner brings a sample to about 2 ms, at most 100 calls). With ``rounds`` > 1 the blocks
    run again in turn and the samples pool, so that every engine's samples spread over the same
    stretch of time: on a machine whose load changes by the second, rows timed in one block each
    can differ by the load alone. Returns {key: (samples, inner)}.
    """
    result = {}
    for _ in range(rounds):
        for key, fn in jobs:
            start, calls, one = time.perf_counter(), 0, math.inf
            while calls < max(warmup, 1) or (time.perf_counter() - start < settle and calls < 1000):
                t0 = time.perf_counter()
                fn()
                one = min(one, time.perf_counter() - t0)
                calls += 1
            samples, inner = result.get(key, ([], None))
            if inner is None:  # fixed in the first round
                inner = 1 if one >= 1e-3 else min(100, math.ceil(2e-3 / max(one, 1e-6)))
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                samples.append((time.perf_counter() - t0) / inner)
            result[key] = (samples, inner)
    return result


def make_data(case, seed):
    rng = np.random.default_rng(seed)
    _, fan, kh, kw = case.weight_shape  # Cout/g (transposed) or Cin/g (Conv2d): the fan of each output
    bound = 1 / math.sqrt(fan * kh * kw)  # MindSpore's default init scale: outputs stay O(1)
    return {
        "x": rng.standard_normal(case.x_shape).astype(case.dtype),
        "w": rng.uniform(-bound, bound, case.weight_shape).astype(case.dtype),
        "b": rng.uniform(-bound, bound, case.cout).astype(case.dtype),
        "g": rng.standard_normal(case.y_shape).astype(case.dtype),
    }


def run_case(case, engines, opts, out):
    """Check, then time, every engine on one case; returns the JSON record."""
    data = make_data(case, opts.seed)
    if case.kind == "conv2d":
        oracle_forward, oracle_backward = reference.conv2d_forward, reference.conv2d_backward
    else:
        oracle_forward, oracle_backward = reference.forward, reference.backward
    oracle_y = (oracle_forward(data["x"], data["w"], data["b"], **case.kwargs()),)
    oracle_grads = oracle_backward(data["x"], data["w"], data["g"], **case.kwargs())
    record = {
        "case": case.name,
        "kind": case.kind,
        "config": dataclasses.asdict(case),
        "describe": case.describe(),
        "macs": case.macs,
        "y_shape": case.y_shape,
        "engines": {},
    }
    runners, notes = {}, []
    oracle = {"fwd": oracle_y, "bwd": oracle_grads}
    for name, engine in engines.items():
        prepare = engine.prepare if case.kind == "transpose" else getattr(engine, "prepare_conv2d", None)
        if prepare is None:  # no row for this layer (ONNX Runtime: transposed only)
            continue
        rec = record["engines"][name] = {"status": "ok"}
        try:
            runner = prepare(case, data)
        except Exception as exc:  # an engine that has no kernel for this case (a dtype) is skipped
            reason = str(exc).strip().splitlines()[0].split(" : ")[-1]  # onnxruntime prefixes codes
            rec["status"] = f"skipped: {reason[:150]}"
            continue
        runners[name] = runner
        for direction, call in (("fwd", runner.forward), ("bwd", runner.backward)):
            if call is None:
                continue
            try:  # an engine that raises here fails the check
                got = tuple(runner.to_numpy(a) for a in ((call(),) if direction == "fwd" else call()))
            except Exception as exc:
                got = exc
            worst, msg = (
                (math.inf, f"{type(got).__name__}: {got}")
                if isinstance(got, Exception)
                else compare(got, oracle[direction], case.dtype)
            )
            rec[f"check_{direction}"] = {"against": "oracle", "worst_ratio": worst}
            if worst > 1:
                rec[f"fail_{direction}"] = msg
                notes.append(
                    f"  {name} {direction} FAIL vs the oracle: {msg}" + ("" if opts.check_only else " (not timed)")
                )

    jobs = []
    fwd_gemm, bwd_gemm, gemm_label = gemm_jobs(case, np.random.default_rng(opts.seed + 1))
    record["gemm"] = {"product": gemm_label}
    if not opts.check_only:
        jobs += [(("gemm", "fwd"), fwd_gemm), (("gemm", "bwd"), bwd_gemm)]
        for name, runner in runners.items():
            rec = record["engines"][name]
            if "fail_fwd" not in rec:
                jobs.append(((name, "fwd"), runner.forward))
            if runner.backward is not None and "fail_bwd" not in rec:
                jobs.append(((name, "bwd"), runner.backward))
        timings = measure(jobs, opts.repeat, opts.warmup, rounds=opts.rounds)
        record["gemm"].update({d: _stats(*timings[("gemm", d)]) for d in ("fwd", "bwd")})
        for (name, direction), (samples, inner) in timings.items():
            if name != "gemm":
                record["engines"][name][direction] = _stats(samples, inner)
        for name, runner in runners.items():  # memory after timing: the profilers slow things down
            if runner.peak is not None:
                rec = record["engines"][name]
                for direction in ("fwd", "bwd"):
                    if direction in rec:
                        fn = runner.forward if direction == "fwd" else runner.backward
                        rec.setdefault("peak_bytes", {})[direction] = runner.peak(fn)
        _ratios(record, opts.ratio_of)
    print_case(record, notes, out)
    return record


def _stats(samples, inner):
    ms = [s * 1e3 for s in samples]
    return {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples_ms": ms,
        "calls_per_sample": inner,
    }


def _ratios(record, stat):
    """vs_gemm and vs_peer of every timed row, from the `stat` ('median' or 'min') of each."""
    key, engines = f"{stat}_ms", record["engines"]
    record["fastest_peer"] = {}
    for direction in ("fwd", "bwd"):
        timed = {n: engines[n][direction][key] for n in PEERS if direction in engines.get(n, {})}
        best = min(timed, key=timed.get) if timed else None
        record["fastest_peer"][direction] = best
        gemm = record["gemm"][direction][key]
        ort = engines.get(REFERENCE_FORWARD, {}).get(direction, {}).get(key)
        for rec in list(engines.values()) + [record["gemm"]]:
            if direction in rec:
                rec[direction]["vs_gemm"] = rec[direction][key] / gemm
                rec[direction]["vs_peer"] = rec[direction][key] / timed[best] if best else None
                rec[direction]["vs_ort"] = rec[direction][key] / ort if ort else None


# --------------------------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------------------------

GEMM_BOUND = ("dcgan_mid", "unet_up", "fcn_same", "dcgan_last", "sr_up")


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(records, stat):
    """Geometric means over the transposed cases, then the Conv2d summary (``conv2d_summary``)."""
    transposed = [r for r in records if r.get("kind", "transpose") == "transpose"]
    conv2d = [r for r in records if r.get("kind") == "conv2d"]
    text = _transposed_summary(transposed, stat) if transposed else ""
    return text + (conv2d_summary(conv2d, stat) if conv2d else "")


def _transposed_summary(records, stat):
    """Geometric means of ours against the peers, ONNX Runtime and the GEMM limit, and the
    cases where ours is slower than the faster peer."""
    lines = []
    for label, direction, field, names in (
        ("fwd /peer", "fwd", "vs_peer", None),
        ("bwd /peer", "bwd", "vs_peer", None),
        ("fwd /ort", "fwd", "vs_ort", None),
        ("fwd /gemm (GEMM-bound cases)", "fwd", "vs_gemm", GEMM_BOUND),
    ):
        ratios = {
            r["case"]: r["engines"]["ours"][direction].get(field)
            for r in records
            if direction in r["engines"].get("ours", {}) and (names is None or r["case"] in names)
        }
        ratios = {c: v for c, v in ratios.items() if v}
        if not ratios:
            continue
        geomean = math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios))
        line = f"ours {label}: geometric mean {geomean:.2f} over {len(ratios)} cases"
        if field == "vs_peer":
            slower = [f"{c} {v:.2f}" for c, v in ratios.items() if v > 1]
            line += f"; slower than the faster peer in: {', '.join(slower) or 'none'}"
        if field == "vs_gemm":
            line += "; " + ", ".join(f"{c} {v:.2f}" for c, v in ratios.items())
        lines.append(line)
    lines += _baseline_lines(records, stat)
    return "\n" + "\n".join(lines) if lines else ""


# (label, numerator engine, denominator engine) of the Conv2d table's ratio columns.
CONV2D_RATIOS = (
    ("ours_pt/pt", "ours_pt", "torch"),
    ("ours_jx/jax", "ours_jx", "jax"),
    ("ours/pt", "ours", "torch"),
    ("ours/jax", "ours", "jax"),
)


def _time(record, name, direction, stat):
    return record["engines"].get(name, {}).get(direction, {}).get(f"{stat}_ms")


def conv2d_summary(records, stat):
    """The nn.Conv2d table: per case and direction, each engine's time and the ratios of
    CONV2D_RATIOS; then their geometric means over the cases, and ours/pt over the GEMM-bound ones."""
    engines = ("torch", "ours_pt", "jax", "ours_jx", "ours")
    head = (
        f"{'case':<12}{'dir':<4}" + "".join(f"{n:>9}" for n in engines) + "".join(f"{r[0]:>12}" for r in CONV2D_RATIOS)
    )
    lines = ["", "", f"nn.Conv2d: {stat} ms per call, and ratios of {stat}s (the same run)", head]
    ratios = {}  # (direction, label) -> {case: ratio}
    for direction in ("fwd", "bwd"):
        for r in records:
            times = [_time(r, n, direction, stat) for n in engines]
            cells = "".join(f"{_ms(t):>9}" for t in times)
            for label, num, den in CONV2D_RATIOS:
                a, b = _time(r, num, direction, stat), _time(r, den, direction, stat)
                if a and b:
                    ratios.setdefault((direction, label), {})[r["case"]] = a / b
                value = ratios.get((direction, label), {}).get(r["case"])
                cells += f"{_ratio(value):>12}"
            lines.append(f"{r['case']:<12}{direction:<4}{cells}")
        means = "".join(
            f"{_ratio(_geomean(list(ratios[direction, label].values())) if (direction, label) in ratios else None):>12}"
            for label, _, _ in CONV2D_RATIOS
        )
        lines.append(f"{'geomean':<12}{direction:<4}{'':>{9 * len(engines)}}{means}")
    for direction in ("fwd", "bwd"):
        gemm_bound = {c: v for c, v in ratios.get((direction, "ours/pt"), {}).items() if c in CONV2D_GEMM_BOUND}
        if gemm_bound:
            mean = _geomean(list(gemm_bound.values()))
            lines.append(
                f"ours {direction} /torch on the GEMM-bound Conv2d cases: geometric mean {mean:.2f}, "
                f"worst {max(gemm_bound.values()):.2f} ({max(gemm_bound, key=gemm_bound.get)})"
            )
    return "\n".join(lines)


def _baseline_lines(records, stat):
    """For each engine with a ``baseline`` (a library engine built on a framework): the geometric
    mean of its time over the baseline's (the framework's raw op + crop), per direction."""
    lines = []
    for name, engine in ENGINES.items():
        base = getattr(engine, "baseline", None)
        for direction in ("fwd", "bwd") if base else ():
            ratios = {
                r["case"]: r["engines"][name][direction][f"{stat}_ms"] / r["engines"][base][direction][f"{stat}_ms"]
                for r in records
                if direction in r["engines"].get(name, {}) and direction in r["engines"].get(base, {})
            }
            if ratios:
                geomean = _geomean(list(ratios.values()))
                lines.append(
                    f"{name} {direction} /{base}: geometric mean {geomean:.2f} over {len(ratios)} cases; "
                    + ", ".join(f"{c} {v:.2f}" for c, v in ratios.items())
                )
    return lines


COLUMNS = (
    f"{'case':<12}{'engine':<7}{'fwd med':>8}{'min':>7}{'max':>7}{'/peer':>6}{'/gemm':>6}{'/ort':>6}"
    f"  {'bwd med':>7}{'min':>7}{'max':>7}{'/peer':>6}{'/gemm':>6}{'peak MiB':>12}"
)


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def _ratio(v):
    return "-" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _cells(rec, direction):
    if f"fail_{direction}" in rec:
        return f"{'FAIL':>7}{'':>7}{'':>7}{'':>6}{'':>6}" + (f"{'':>6}" if direction == "fwd" else "")
    t = rec.get(direction)
    if t is None:
        return f"{'-':>7}{'-':>7}{'-':>7}{'-':>6}{'-':>6}" + (f"{'-':>6}" if direction == "fwd" else "")
    cells = (
        f"{_ms(t['median_ms']):>7}{_ms(t['min_ms']):>7}{_ms(t['max_ms']):>7}"
        f"{_ratio(t['vs_peer']):>6}{_ratio(t['vs_gemm']):>6}"
    )
    return cells + f"{_ratio(t.get('vs_ort')):>6}" if direction == "fwd" else cells


def _peak(rec, name):
    peak = rec.get("peak_bytes")
    if not peak:
        return "n/a" if name in ("jax", "onnxrt") else "-"
    return "/".join(f"{peak[d] / 2**20:.1f}" if d in peak else "-" for d in ("fwd", "bwd"))


def _verdict(rec, direction):
    check = rec.get(f"check_{direction}")
    if check is None:
        return "-"
    if f"fail_{direction}" in rec:
        return f"FAIL vs {check['against']}"
    return f"ok vs {check['against']}, error {check['worst_ratio']:.3f} of the bound"


def print_case(record, notes, out):
    fastest = record.get("fastest_peer", {})
    print(f"\n{record['case']}: {record['describe']}", file=out)
    macs = record["macs"]
    summary = f"  {macs / 1e9:.3g} GMAC" if macs >= 1e9 else f"  {macs / 1e6:.3g} MMAC"
    summary += f"; gemm {record['gemm']['product']}"
    if fastest:
        summary += f"; fastest peer fwd {fastest['fwd'] or '-'}, bwd {fastest['bwd'] or '-'}"
    print(summary, file=out)
    rows = [("gemm", record["gemm"])] if "fwd" in record["gemm"] else []
    for name, rec in rows + list(record["engines"].items()):
        head = f"{record['case']:<12}{name:<7}"
        if rec.get("status", "ok") != "ok":
            print(f"{head}{rec['status']}"[:110], file=out)
        elif name != "gemm" and "fwd" not in rec and "bwd" not in rec:  # --check-only
            verdicts = "  ".join(f"{d} {_verdict(rec, d)}" for d in ("fwd", "bwd"))
            print(f"{head} {verdicts.replace(' of the bound', '')}", file=out)
        else:
            print(f"{head} {_cells(rec, 'fwd')}  {_cells(rec, 'bwd')}{_peak(rec, name):>12}", file=out)
    for note in notes:
        print(note, file=out)
    out.flush()


def machine_info(versions):
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if models:
            info["cpu_model"] = models[0]
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, {p.get('architecture', '?')})"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = ["unknown (threadpoolctl not installed)"]
    info["engines"] = versions
    return info


def plot(records, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed; no plot written to {path}")
        return
    names = ["gemm"] + list(ENGINES)
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 1.3 * len(records)), 7), sharex=True)
    width = 0.8 / len(names)
    for ax, direction in zip(axes, ("fwd", "bwd")):
        for i, name in enumerate(names):
            xs, ys = [], []
            for j, rec in enumerate(records):
                source = rec["gemm"] if name == "gemm" else rec["engines"].get(name, {})
                if direction in source:
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(source[direction]["median_ms"])
            if xs:
                ax.bar(xs, ys, width, label=name)
        ax.set_yscale("log")
        ax.set_ylabel(f"{'forward' if direction == 'fwd' else 'backward'} ms (median)")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(ncol=len(names), fontsize="small")
    axes[1].set_xticks(range(len(records)))
    axes[1].set_xticklabels([r["case"] for r in records], rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cases", help="comma-separated case names (any of --list); default: the eight main and six Conv2d cases"
    )
    p.add_argument("--extra", action="store_true", help="also run cases.EXTRA_CASES")
    p.add_argument(
        "--kind",
        choices=("all", "transpose", "conv2d"),
        default="all",
        help="without --cases: the transposed cases, the nn.Conv2d cases or both (default %(default)s)",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of %(default)s")
    p.add_argument("--dtype", choices=sorted(TOL), help="run every selected case in this dtype")
    p.add_argument("--repeat", type=int, default=10, help="timed samples per engine (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default %(default)s)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every engine's block this many times in turn, pooling the samples (default %(default)s)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: --repeat 3 --warmup 1")
    p.add_argument(
        "--ratio-of",
        choices=("median", "min"),
        default="median",
        help="statistic the /peer and /gemm ratios compare (default %(default)s; min is steadier on a busy machine)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="threads for torch, onnxruntime and NumPy's BLAS (default %(default)s)"
    )
    p.add_argument("--check-only", action="store_true", help="check every engine, time nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart per case, log scale (needs matplotlib)")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.repeat, opts.warmup = 3, 1
    return opts


def select_cases(opts):
    if opts.cases:
        unknown = [n for n in opts.cases.split(",") if n not in ALL_CASES]
        if unknown:
            sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(ALL_CASES)}")
        chosen = [ALL_CASES[n] for n in opts.cases.split(",")]
        if opts.extra:
            chosen += [c for c in EXTRA_CASES if c not in chosen]
    else:
        chosen = CASES + (EXTRA_CASES if opts.extra else []) if opts.kind != "conv2d" else []
        chosen += CONV2D_CASES if opts.kind != "transpose" else []
    if opts.dtype:
        chosen = [dataclasses.replace(c, dtype=opts.dtype) for c in chosen]
    return chosen


def main(argv=None):
    opts = parse_args(argv)
    if opts.list:
        for c in CASES + EXTRA_CASES + CONV2D_CASES:
            print(f"{c.name:<12} {c.describe()}  ({c.note})")
        return 0
    chosen = select_cases(opts)
    opts.need_x64 = any(c.dtype == "float64" for c in chosen)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(opts.threads, user_api="blas")
    except ImportError:
        pass
    wanted = [n.strip() for n in opts.engines.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ENGINES]
    if unknown:
        sys.exit(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    engines, versions, skipped = {}, {}, []
    for name in (n for n in ENGINES if n in wanted):  # ours first: peers are checked against it
        try:
            versions[name] = ENGINES[name].setup(opts)
            engines[name] = ENGINES[name]
        except ImportError as exc:
            if name == "ours":  # the library under test must be there: a run without it proves nothing
                sys.exit(
                    f"cannot import convtranspose ({exc}): install the project (make bench) or run with PYTHONPATH=."
                )
            skipped.append(f"{name}: skipped ({exc})")
    info = machine_info(versions)
    print(
        f"machine: {info.get('cpu_model', platform.machine())}, {info['cpu_count']} CPUs"
        f" ({info.get('cpus_usable', '?')} usable); python {info['python']}; numpy {info['numpy']}"
    )
    print(f"BLAS: {'; '.join(info['blas']) or 'none found'}")
    for name, version in versions.items():
        print(f"{name}: {version}")
    for line in skipped:
        print(line)
    mode = (
        "check only"
        if opts.check_only
        else f"{opts.repeat * opts.rounds} samples ({opts.rounds} round(s) of {opts.repeat}, each after"
        f" {opts.warmup} warm-up calls)"
    )
    checks = "every engine vs the float64 oracle of tests/reference.py"
    print(f"{mode}; ms per call; checks: {checks}")
    print(
        "\n" + COLUMNS
        if not opts.check_only
        else "per engine and direction: 'ok vs REF, error E' (E = worst |got - ref| / tolerance bound) or FAIL"
    )
    records = [run_case(case, engines, opts, sys.stdout) for case in chosen]
    if not opts.check_only:
        stat = opts.ratio_of
        print(summary(records, stat))
        print(
            f"\n/peer: {stat} / the fastest peer's {stat} (the faster of torch and jax)."
            f"\n/ort: forward {stat} / ONNX Runtime's {stat} (the fastest forward we know; not a peer)."
            f"\n/gemm: {stat} / the gemm row's {stat} (the same multiply-adds as BLAS products)."
            "\npeak MiB fwd/bwd: tracemalloc + kept scratch (ours), torch.profiler allocations (torch); n/a: no"
            "\nallocator trace. See benchmarks/README.md."
        )
    failed = [(r["case"], n) for r in records for n, e in r["engines"].items() if any(k.startswith("fail_") for k in e)]
    if failed:
        print(f"FAIL: {', '.join(f'{c}/{n}' for c, n in failed)}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "settings": {k: v for k, v in vars(opts).items()},
                    "tolerance": TOL,
                    "cases": records,
                },
                f,
                indent=1,
                default=str,
            )
        print(f"figures written to {opts.json}")
    if opts.plot:
        plot(records, opts.plot)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
