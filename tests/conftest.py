"""Shared fixtures: where the golden data lives, one comparison helper, and the engine adapters.

The ``engine`` fixture runs a test once per installed engine (NumPy layer, torch module, jax
function, Flax module), each through a small adapter with one interface, so that the golden
parity, ``errors.json`` and oracle tests are written once and hold for every engine.
"""

import collections
import contextlib
import functools
import json
import os
import re
from pathlib import Path

# Under `make test` the pytest-xdist workers fill the machine's cores: each computes with one
# thread (torch's intra-op pool; OpenBLAS where NumPy is not loaded yet), since two pools of
# spinning threads on two cores slow each other (the torch property tests: 7.0 s against 3.2 s
# measured). Set before the first import of numpy or torch; a value already set is kept.
if os.environ.get("PYTEST_XDIST_WORKER") and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (
    os.cpu_count() or 1
):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests: a few hundred examples by default; `make fuzz` selects the 'fuzz' profile
# (10,000 a property). Deadlines are off: first calls compile (torch, XLA) and the machine is shared.
settings.register_profile("default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Examples each property ran to completion, by test id. `make fuzz` sets this variable to a folder:
# each pytest process (one per xdist worker) writes its counts there, and the summary adds them up.
COUNTS_DIR = os.environ.get("CONVTRANSPOSE_EXAMPLE_COUNTS")
_EXAMPLES: "collections.Counter[str]" = collections.Counter()


def counted(check):
    """Count the examples a property's inner function runs to the end (apply it under ``@given``)."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        result = check(*args, **kwargs)
        _EXAMPLES[os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]] += 1
        return result

    return run


def _write_counts():
    if COUNTS_DIR and _EXAMPLES:
        Path(COUNTS_DIR).mkdir(parents=True, exist_ok=True)
        (Path(COUNTS_DIR) / f"{os.getpid()}.json").write_text(json.dumps(_EXAMPLES))


# Written after every test, not only at the end, so that a fuzz run stopped part-way (they take
# hours) still leaves the counts of the properties it finished.
def pytest_runtest_logfinish(nodeid, location):
    _write_counts()


def pytest_sessionfinish(session):
    _write_counts()


def pytest_terminal_summary(terminalreporter):
    if not COUNTS_DIR or not Path(COUNTS_DIR).is_dir():
        return
    totals: "collections.Counter[str]" = collections.Counter()
    for path in Path(COUNTS_DIR).glob("*.json"):
        totals.update(json.loads(path.read_text()))
    terminalreporter.section("examples run per property")
    for test, count in sorted(totals.items()):
        terminalreporter.line(f"{count:>8,}  {test}")
    terminalreporter.line(f"{sum(totals.values()):>8,}  in all, over {len(totals)} properties")


# ---------------------------------------------------------------------------- two workers
# `make test` runs two pytest-xdist workers. The Flax module computes with the jax function: when a
# case's Flax test runs in the process that has just run its jax test, the XLA programs compiled for
# jax are reused (a case then costs Flax a tenth of its compile). So the unit of work a worker
# receives is one test and case on every engine (its node ids with the engine left out), the tests
# listed in SHARED_UNITS (node id prefixes) go to one worker together, and so does each chunk of
# float32 golden cases (CHUNKED_UNITS below). (xdist's own
# xdist_group marks do not reach its scheduler under pytest 9, hence a scheduler of our own.)
SHARED_UNITS = {
    # the float16 golden cases and the bit-exact count that reads their results back
    "tests/test_golden_parity.py::test_fp16_": "float16 golden",
    "tests/test_conv2d_golden.py::test_conv2d_fp16_": "conv2d float16 golden",
}

# The float32 golden files hold 300 cases per layer. NumPy, torch and the jax function run every
# case in the default suite; the Flax module, which calls the same jax function, runs a fixed
# sample there (every GOLDEN_SAMPLE[engine]-th case) that proves its wiring (parameters, dtype).
# `make test-all` (CONVTRANSPOSE_ALL_CASES=1) runs every case on the Flax module too.
GOLDEN_SAMPLE = {"flax": 10}
ALL_CASES = bool(os.environ.get("CONVTRANSPOSE_ALL_CASES"))


def is_sampled(engine_name: str, index: int) -> bool:
    """Whether float32 golden case ``index`` runs on ``engine_name`` (see GOLDEN_SAMPLE)."""
    return ALL_CASES or index % GOLDEN_SAMPLE.get(engine_name, 1) == 0


def skip_unless_sampled(engine_name: str, index: int) -> None:
    """Skip float32 golden case ``index`` on the Flax module outside its default-suite sample."""
    step = GOLDEN_SAMPLE.get(engine_name, 1)
    if not is_sampled(engine_name, index):
        pytest.skip(f"{engine_name} runs one float32 golden case in {step} by default (make test-all: every case)")


# The float32 golden cases, GOLDEN_CHUNK at a time: an XLA engine compiles a chunk as one program
# (conftest's forward_backward_many), so a chunk is one unit of work on every engine.
GOLDEN_CHUNK = 25
CHUNKED_UNITS = ("tests/test_golden_parity.py::test_fp32_case[", "tests/test_conv2d_golden.py::test_conv2d_fp32_case[")

_ENGINE_IN_ID = re.compile(r"(?<=[\[-])(numpy|torch|jax|flax)(?=[-\]])")
_CASE_INDEX = re.compile(r"(\d+)\]$")


def work_unit(nodeid: str) -> str:
    """The unit of work of a test: its SHARED_UNITS name, its golden chunk, else its node id without the engine."""
    for prefix, unit in SHARED_UNITS.items():
        if nodeid.startswith(prefix):
            return unit
    index = _CASE_INDEX.search(nodeid)
    if nodeid.startswith(CHUNKED_UNITS) and index:
        return f"{nodeid.split('[')[0]} chunk {int(index.group(1)) // GOLDEN_CHUNK}"
    return _ENGINE_IN_ID.sub("", nodeid)


# Units that take several seconds each (subprocesses, torch.compile, the float16 files), run first
# so that the two workers finish together instead of one waiting on a long unit at the end.
LONGEST_FIRST = (
    "tests/test_xla_codegen.py",
    "tests/test_torch_export.py::test_compile",
    "tests/test_torch_ddp.py",
    "tests/test_jax.py::test_batch_sharded",
    "tests/test_conv2d_jax.py::test_batch_sharded",
    *SHARED_UNITS,
    "tests/test_checkpoint.py::test_fuzz",
    "tests/test_bounds.py",
)


def pytest_collection_modifyitems(config, items):
    """The LONGEST_FIRST tests ahead of the others (a stable sort: their order otherwise kept)."""
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


def pytest_xdist_make_scheduler(config, log):
    """Under ``-n N`` (dist 'load'), whole work units (see work_unit) to each worker."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class EngineGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    return EngineGroupScheduling(config, log)


def host_devices_env(count: int) -> dict:
    """This process's environment for a JAX subprocess with ``count`` CPU devices.

    The device count joins the XLA_FLAGS already set (``make test``'s quick compile flags), so
    the subprocess compiles as this process does.
    """
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")


ROOT = Path(__file__).resolve().parents[1]
# The reference data recorded from the real MindSpore (tests/data/README.md says what each file is).
GOLDEN = ROOT / "tests" / "data"

GEOMETRY_KEYS = ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")


def golden_path(name: str) -> Path:
    """Path of a file of tests/data; a missing one fails the test (the data is part of the repository)."""
    path = GOLDEN / name
    if not path.exists():
        pytest.fail(f"reference data {path} is missing: tests/data/ is part of the repository")
    return path


def load_golden(name: str):
    """``(configs, arrays)`` of a golden .npz (configs: list of constructor kwargs with tuples)."""
    data = np.load(golden_path(name))
    configs = [
        {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()} for cfg in json.loads(str(data["configs"]))
    ]
    return configs, data


@pytest.fixture(scope="session")
def fp32_golden():
    """``golden_seed1.npz``: 300 float32 cases recorded from MindSpore (see load_golden)."""
    return load_golden("golden_seed1.npz")


@pytest.fixture(scope="session")
def fp16_golden():
    """``golden_fp16.npz``: 40 float16 cases recorded from MindSpore."""
    return load_golden("golden_fp16.npz")


def assert_close(got, ref, tol: float, label: str) -> None:
    """Elementwise |got - ref| <= tol + tol*|ref|, with matching shape and dtype."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{label}: shape {got.shape} != reference {ref.shape}"
    assert got.dtype == ref.dtype, f"{label}: dtype {got.dtype} != reference {ref.dtype}"
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = tol + tol * np.abs(ref.astype(np.float64))
    if err.size and not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{label}: {int(np.sum(err > bound))} of {err.size} elements off; worst at "
            f"{worst}: got {got[worst]}, reference {ref[worst]}"
        )


def geometry(cfg):
    """The functional keyword arguments of a constructor config."""
    return {key: cfg[key] for key in GEOMETRY_KEYS if key in cfg}


# ---------------------------------------------------------------------------- engine adapters
# Each adapter: construct(**kwargs) -> layer; call(layer, x) -> output (x an ndarray or a list);
# weight_of/bias_of(layer) -> ndarray | None; to_numpy(output);
# forward_backward(cfg, x, w, b, g) -> {'y', 'dx', 'dw'[, 'db']} as ndarrays, where the
# gradients are those of sum(y * g); float64() -> a context in which the engine holds float64.


# The two layers: (NumPy/torch/Flax class name, functional name in each front end).
LAYER_NAMES = {"transpose": ("Conv2dTranspose", "conv2d_transpose"), "conv2d": ("Conv2d", "conv2d")}


class _Adapter:
    def __init__(self, layer="transpose"):
        self.layer = layer
        self.class_name, self.function_name = LAYER_NAMES[layer]

    def float64(self):
        """A block in which float64 arrays exist (every engine but JAX's, which needs x64 on)."""
        return contextlib.nullcontext()

    def forward_backward_many(self, cases):
        """``forward_backward`` of each ``(cfg, x, w, b, g)`` in ``cases``, as a list.

        The XLA engines (jax, Flax) trace every case into one jitted program: XLA's fixed cost per
        compile, not the cases' own code, is most of a small case's time (30 float32 Conv2d
        golden cases: 19 s compiled one by one, 6 s as one program).
        """
        return [self.forward_backward(*case) for case in cases]


class NumpyAdapter(_Adapter):
    name = "numpy"

    def __init__(self, layer="transpose"):
        super().__init__(layer)
        import convtranspose

        self.ct = convtranspose

    def construct(self, **kwargs):
        return getattr(self.ct, self.class_name)(**kwargs)

    def call(self, net, x):
        return net(x)

    def weight_of(self, net):
        return net.weight.data

    def bias_of(self, net):
        return None if net.bias is None else net.bias.data

    def to_numpy(self, y):
        return y

    def forward_backward(self, cfg, x, w, b, g):
        net = getattr(self.ct, self.class_name)(**cfg, dtype=x.dtype)
        net.weight.set_data(w)
        if b is not None:
            net.bias.set_data(b)
        result = {"y": net(x), "dx": net.backward(g), "dw": net.weight.grad}
        if b is not None:
            result["db"] = net.bias.grad
        return result


class TorchAdapter(_Adapter):
    name = "torch"

    def __init__(self, layer="transpose"):
        super().__init__(layer)
        self.torch = pytest.importorskip("torch")
        self.module = pytest.importorskip("convtranspose.torch")

    def construct(self, **kwargs):
        return getattr(self.module, self.class_name)(**kwargs)

    def call(self, net, x):
        return net(self.torch.from_numpy(x) if isinstance(x, np.ndarray) else x)

    def weight_of(self, net):
        return self.to_numpy(net.weight)

    def bias_of(self, net):
        return None if net.bias is None else self.to_numpy(net.bias)

    def to_numpy(self, y):
        return y.detach().cpu().numpy()

    def forward_backward(self, cfg, x, w, b, g):
        torch = self.torch
        x_t = torch.from_numpy(x).requires_grad_(True)
        w_t = torch.from_numpy(w).requires_grad_(True)
        b_t = None if b is None else torch.from_numpy(b).requires_grad_(True)
        y = getattr(self.module, self.function_name)(x_t, w_t, b_t, **geometry(cfg))
        y.backward(torch.from_numpy(g))
        result = {"y": self.to_numpy(y), "dx": self.to_numpy(x_t.grad), "dw": self.to_numpy(w_t.grad)}
        if b is not None:
            result["db"] = self.to_numpy(b_t.grad)
        return result


class JaxAdapter(_Adapter):
    name = "jax"

    def __init__(self, layer="transpose"):
        super().__init__(layer)
        self.jax = pytest.importorskip("jax")
        self.module = pytest.importorskip("convtranspose.jax")

    def float64(self):
        """x64 on, scoped to the block (JAX's process-wide switch otherwise)."""
        return self.jax.enable_x64(True)

    def construct(self, **kwargs):
        pytest.skip("the jax engine is a function: its constructor checks run through the flax adapter")

    def to_numpy(self, y):
        return np.asarray(y)

    def forward_backward(self, cfg, x, w, b, g):
        jax = self.jax
        kwargs = geometry(cfg)
        function = getattr(self.module, self.function_name)
        if b is None:
            y, vjp = jax.vjp(lambda x, w: function(x, w, None, **kwargs), x, w)
            dx, dw = vjp(g)
            return {"y": np.asarray(y), "dx": np.asarray(dx), "dw": np.asarray(dw)}
        y, vjp = jax.vjp(lambda x, w, b: function(x, w, b, **kwargs), x, w, b)
        dx, dw, db = vjp(g)
        return {"y": np.asarray(y), "dx": np.asarray(dx), "dw": np.asarray(dw), "db": np.asarray(db)}

    def forward_backward_many(self, cases):
        jax, function = self.jax, getattr(self.module, self.function_name)

        def one(cfg, x, w, b, g):
            kwargs = geometry(cfg)
            if b is None:
                y, vjp = jax.vjp(lambda x, w: function(x, w, None, **kwargs), x, w)
                return dict(zip(("y", "dx", "dw"), (y, *vjp(g))))
            y, vjp = jax.vjp(lambda x, w, b: function(x, w, b, **kwargs), x, w, b)
            return dict(zip(("y", "dx", "dw", "db"), (y, *vjp(g))))

        return _run_as_one_program(jax, one, cases)


class FlaxAdapter(_Adapter):
    name = "flax"

    def __init__(self, layer="transpose"):
        super().__init__(layer)
        self.jax = pytest.importorskip("jax")
        self.nnx = pytest.importorskip("flax.nnx")
        self.module = pytest.importorskip("convtranspose.flax")

    float64 = JaxAdapter.float64

    def construct(self, **kwargs):
        return getattr(self.module, self.class_name)(**kwargs, rngs=self.nnx.Rngs(0))

    def call(self, net, x):
        return net(x)  # NumPy arrays as they are: the module converts them (and names their dtype)

    def weight_of(self, net):
        return np.asarray(net.weight[...])

    def bias_of(self, net):
        return None if net.bias is None else np.asarray(net.bias[...])

    def to_numpy(self, y):
        return np.asarray(y)

    def forward_backward(self, cfg, x, w, b, g):
        jax, nnx = self.jax, self.nnx
        net = getattr(self.module, self.class_name)(**cfg, dtype=x.dtype, rngs=nnx.Rngs(0))
        net.weight[...] = jax.numpy.asarray(w)
        if b is not None:
            net.bias[...] = jax.numpy.asarray(b)
        graphdef, params = nnx.split(net, nnx.Param)

        def run(x, params):
            return nnx.merge(graphdef, params)(x)

        y, vjp = jax.vjp(run, jax.numpy.asarray(x), params)
        dx, dparams = vjp(jax.numpy.asarray(g))
        result = {"y": np.asarray(y), "dx": np.asarray(dx), "dw": np.asarray(dparams["weight"][...])}
        if b is not None:
            result["db"] = np.asarray(dparams["bias"][...])
        return result

    def forward_backward_many(self, cases):
        jax, nnx, layer = self.jax, self.nnx, getattr(self.module, self.class_name)

        def one(cfg, x, w, b, g):
            # Built inside the trace, as under nnx.jit: the construction's draws join the program.
            net = layer(**cfg, dtype=x.dtype, rngs=nnx.Rngs(0))
            net.weight[...] = w
            if b is not None:
                net.bias[...] = b
            graphdef, params = nnx.split(net, nnx.Param)
            y, vjp = jax.vjp(lambda x, params: nnx.merge(graphdef, params)(x), x, params)
            dx, dparams = vjp(g)
            result = {"y": y, "dx": dx, "dw": dparams["weight"][...]}
            if b is not None:
                result["db"] = dparams["bias"][...]
            return result

        return _run_as_one_program(jax, one, cases)


def _run_as_one_program(jax, one, cases):
    """``[one(*case) for case in cases]`` as one jitted program (configs static), as ndarrays."""
    configs = [case[0] for case in cases]
    program = jax.jit(lambda arrays: [one(cfg, *case) for cfg, case in zip(configs, arrays)])
    results = program([case[1:] for case in cases])
    return [{name: np.asarray(value) for name, value in result.items()} for result in results]


ADAPTERS = {adapter.name: adapter for adapter in (NumpyAdapter, TorchAdapter, JaxAdapter, FlaxAdapter)}


@pytest.fixture(params=list(ADAPTERS), scope="session")
def engine(request):
    """Every installed engine in turn (skipped where its framework is not installed)."""
    return ADAPTERS[request.param]()


@pytest.fixture(params=["numpy", "torch", "flax"], scope="session")
def layer_engine(request):
    """The engines with a layer constructor (the jax engine is a function)."""
    return ADAPTERS[request.param]()


@pytest.fixture(params=list(ADAPTERS), scope="session")
def conv2d_engine(request):
    """Every installed engine in turn, for MindSpore's nn.Conv2d."""
    return ADAPTERS[request.param]("conv2d")


@pytest.fixture(params=["numpy", "torch", "flax"], scope="session")
def conv2d_layer_engine(request):
    """The engines with a Conv2d layer constructor (the jax engine is a function)."""
    return ADAPTERS[request.param]("conv2d")
