"""MindSpore's parameter initializers (``mindspore.common.initializer``) on NumPy.

Same class names, arguments, defaults, string registry and fan rules as MindSpore 2.10,
including its quirks: fans are computed as for a conv weight (``fan_in = shape[1] * kH * kW``),
TruncatedNormal's ``a`` and ``b`` are absolute bounds, and VarianceScaling's default
``distribution='truncated_normal'`` samples a uniform law (a name mismatch in MindSpore's
code that we keep on purpose).

Random draws come from a NumPy ``Generator``: pass ``rng=`` or seed the module-level one with
:func:`set_seed` (MindSpore's C++ generator cannot be reproduced, only its distributions).

Example:
    >>> import numpy as np
    >>> from convtranspose import initializer as init
    >>> init.set_seed(0)
    >>> w = init.initializer(init.Normal(sigma=0.02), (4, 8, 3, 3), np.float32)
    >>> w.shape, w.dtype
    ((4, 8, 3, 3), dtype('float32'))
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .dtypes import resolve_dtype

__all__ = [
    "Initializer",
    "Normal",
    "Uniform",
    "TruncatedNormal",
    "HeUniform",
    "HeNormal",
    "XavierUniform",
    "XavierNormal",
    "Constant",
    "One",
    "Zero",
    "Orthogonal",
    "Dirac",
    "VarianceScaling",
    "Identity",
    "Sparse",
    "initializer",
    "set_seed",
    "get_rng",
    "calculate_gain",
    "fan_in_and_fan_out",
]

_rng: Optional[np.random.Generator] = None

# The largest seed: MindSpore's set_seed passes it to np.random.seed, which takes 32 bits.
_SEED_MAX = 2**32 - 1


def set_seed(seed: Optional[int]) -> None:
    """Seed the generator that initializers use when no ``rng`` is given (like ``ms.set_seed``).

    ``set_seed(None)`` goes back to the default: as in MindSpore, each draw then takes its seed
    from NumPy's global random state, so ``np.random.seed(n)`` also makes it reproducible.

    Args:
        seed: a Python int in ``[0, 2**32 - 1]`` (MindSpore's ``set_seed`` takes a non-negative
            int, not a bool, and seeds NumPy's global generator with it, whose range this is),
            or None.

    Raises:
        TypeError: seed is not an int (a bool, a float, a string, a NumPy integer, a list).
        ValueError: seed is negative or past ``2**32 - 1``.
    """
    global _rng
    if seed is not None:
        if type(seed) is not int:
            raise TypeError(
                f"seed must be an int in [0, 2**32 - 1] or None, got seed={_brief(seed)} of type {type(seed).__name__}"
            )
        if not 0 <= seed <= _SEED_MAX:
            raise ValueError(f"seed must be an int in [0, 2**32 - 1] or None, got seed={_brief(seed)}")
    _rng = None if seed is None else np.random.default_rng(seed)


def get_rng() -> np.random.Generator:
    """The generator an initializer uses when no ``rng`` is given."""
    if _rng is not None:
        return _rng
    # MindSpore seeds each initializer with np.random.randint(1, 2**63); do the same
    return np.random.default_rng(int(np.random.randint(1, 2**63, dtype=np.int64)))


def fan_in_and_fan_out(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """``(fan_in, fan_out)`` as MindSpore computes them: ``shape[1]*rest``, ``shape[0]*rest``."""
    if len(shape) < 2:
        raise ValueError(
            f"fan_in and fan_out cannot be computed for a tensor with fewer than 2 dimensions, got shape {shape}"
        )
    receptive = math.prod(shape[2:])  # Python ints: no overflow
    return shape[1] * receptive, shape[0] * receptive


# Ints longer than this are echoed in messages by their length: 10**400 would fill a screen,
# and Python refuses to print ints past 4300 digits at all.
_ECHO_DIGITS = 30


def _brief(value: Any) -> str:
    """The repr of ``value`` for a message, with huge ints (also inside initializers) shortened."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
        if abs(number) >= 10**_ECHO_DIGITS:
            try:
                size = f"{len(str(abs(number)))} digits"
            except ValueError:  # past sys.get_int_max_str_digits()
                size = f"{number.bit_length()} bits"
            return f"<{'a negative' if number < 0 else 'an'} int of {size}>"
    if isinstance(value, Initializer):
        return f"{type(value).__name__}({value._describe_args('')})"
    return repr(value)


def _real(owner: str, name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {name}={_brief(value)}")
    return _to_float(value)


def _to_float(value: Any) -> float:
    """``float(value)`` for a real number.

    Raises:
        TypeError: a complex number (``float`` of a NumPy complex would drop the imaginary part).
        OverflowError: a finite number past float64's range (a huge int, a NumPy long double),
            which ``float`` would make inf or refuse.
    """
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        raise TypeError(f"{value!r} is complex")
    result = float(value)
    if math.isinf(result):
        try:
            finite = bool(np.isfinite(value))
        except TypeError:
            finite = False
        if finite:
            raise OverflowError(f"{value!r} is past float64's range")
    return result


def calculate_gain(nonlinearity: str, param: Any = None) -> float:
    """Recommended gain of a nonlinearity (MindSpore's and PyTorch's table).

    Raises:
        ValueError: an unknown nonlinearity, or a leaky_relu slope that is not a number.
    """
    linear = (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    )
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (bool, np.bool_)) or not isinstance(param, numbers.Real):
            raise ValueError(f"negative_slope must be a number, got negative_slope={_brief(param)}")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(
        f"nonlinearity must be one of 'linear', 'conv2d', 'sigmoid', 'tanh', 'relu', "
        f"'leaky_relu', got nonlinearity={nonlinearity!r}"
    )


class Initializer:
    """Base class: ``init(shape, dtype, rng=None)`` returns a new array of that shape and dtype.

    Arguments are checked when the initializer is applied (as MindSpore does), so a bad
    argument surfaces where the layer is built.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs

    def __call__(
        self, shape: Sequence[int], dtype: Any = np.float32, rng: Optional[np.random.Generator] = None
    ) -> np.ndarray:
        """Draw an array of ``shape`` in ``dtype`` (float16/32/64).

        Raises:
            TypeError, ValueError: a bad argument of the initializer, or values that do not fit
                ``dtype`` (``Constant(1e300)`` in float32, ``Normal(sigma=10**400)``).
        """
        shape = tuple(int(s) for s in shape)
        target = resolve_dtype(dtype)
        try:
            values = np.asarray(self._sample(shape, rng if rng is not None else get_rng()), dtype=np.float64)
        except OverflowError:  # Python ints past float64, or NumPy's bounds check
            raise ValueError(f"{type(self).__name__}: {self._describe_too_large()}") from None
        with np.errstate(over="ignore", invalid="ignore"):
            result = values.reshape(shape).astype(target)
            # finite draws that overflow the dtype, or infinite arguments that made NaN or inf
            overflowed = not np.isfinite(result).all() and not self._explicit_non_finite()
        if overflowed:
            raise ValueError(
                f"{type(self).__name__} draws values that are not finite in {target.name} ({self._describe_args()})"
            )
        return result

    def _describe_args(self, empty: str = "no arguments") -> str:
        return ", ".join(f"{key}={_brief(value)}" for key, value in self._kwargs.items()) or empty

    def _describe_too_large(self) -> str:
        """Name the arguments that no float64 holds (10**400, inf), or list them all."""
        too_large = []
        for key, value in self._kwargs.items():
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
                try:
                    finite = math.isfinite(float(value))
                except OverflowError:
                    finite = False
                if not finite:
                    too_large.append(f"{key}={_brief(value)}")
        if too_large:
            verb = "is not a finite float64" if len(too_large) == 1 else "are not finite float64s"
            return f"{', '.join(too_large)} {verb} (at most {np.finfo(np.float64).max:.3g} in magnitude)"
        return f"an argument is too large for a float64 ({self._describe_args()})"

    def _explicit_non_finite(self) -> bool:
        """True when the caller asked for NaN or inf on purpose (a Constant of one)."""
        return False

    def _sample(self, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _brief(self)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._kwargs == other._kwargs  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class Normal(Initializer):
    """N(mean, sigma**2). Positional order (sigma, mean), as in MindSpore."""

    def __init__(self, sigma: float = 0.01, mean: float = 0.0) -> None:
        super().__init__(sigma=sigma, mean=mean)
        self.sigma, self.mean = sigma, mean

    def _sample(self, shape, rng):
        sigma, mean = _real("Normal", "sigma", self.sigma), _real("Normal", "mean", self.mean)
        if sigma < 0:
            raise ValueError(f"Normal: sigma must be >= 0, got sigma={_brief(self.sigma)}")
        return rng.normal(mean, sigma, shape)


class Uniform(Initializer):
    """U(-scale, scale)."""

    def __init__(self, scale: float = 0.07) -> None:
        super().__init__(scale=scale)
        self.scale = scale

    def _sample(self, shape, rng):
        scale = _real("Uniform", "scale", self.scale)
        return rng.uniform(-scale, scale, shape)


# Coefficients of Acklam's rational approximation of the standard normal quantile
# (relative error below 1.2e-9, ample for float32 parameters).
_Q_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_Q_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_Q_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_Q_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    """Inverse of the standard normal CDF for ``0 < p < 1`` (vectorised)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    num = ((((_Q_A[0] * r + _Q_A[1]) * r + _Q_A[2]) * r + _Q_A[3]) * r + _Q_A[4]) * r + _Q_A[5]
    den = ((((_Q_B[0] * r + _Q_B[1]) * r + _Q_B[2]) * r + _Q_B[3]) * r + _Q_B[4]) * r + 1
    out[mid] = num * q / den
    for mask, tail, sign in ((low, p[low], 1.0), (high, 1 - p[high], -1.0)):
        q = np.sqrt(-2 * np.log(tail))
        num = ((((_Q_C[0] * q + _Q_C[1]) * q + _Q_C[2]) * q + _Q_C[3]) * q + _Q_C[4]) * q + _Q_C[5]
        den = (((_Q_D[0] * q + _Q_D[1]) * q + _Q_D[2]) * q + _Q_D[3]) * q + 1
        out[mask] = sign * num / den
    return out


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


class TruncatedNormal(Initializer):
    """N(mean, sigma**2) restricted to ``[a, b]``; ``a`` and ``b`` are absolute values."""

    def __init__(self, sigma: float = 0.01, mean: float = 0.0, a: float = -2.0, b: float = 2.0) -> None:
        super().__init__(sigma=sigma, mean=mean, a=a, b=b)
        self.sigma, self.mean, self.a, self.b = sigma, mean, a, b

    def _sample(self, shape, rng):
        sigma = _real("TruncatedNormal", "sigma", self.sigma)
        mean = _real("TruncatedNormal", "mean", self.mean)
        a, b = _real("TruncatedNormal", "a", self.a), _real("TruncatedNormal", "b", self.b)
        if sigma < 0:
            raise ValueError(f"TruncatedNormal: sigma must be >= 0, got sigma={_brief(self.sigma)}")
        if not a < b:
            raise ValueError(f"TruncatedNormal: a must be smaller than b, got a={_brief(self.a)}, b={_brief(self.b)}")
        if sigma == 0:
            return np.full(shape, min(max(mean, a), b))
        lo, hi = (a - mean) / sigma, (b - mean) / sigma
        # Sample the tail nearer to the mean's side of zero so that the CDF values keep
        # their relative precision (both bounds far in the upper tail would round to 1).
        flip = lo > 0
        if flip:
            lo, hi = -hi, -lo
        p_lo, p_hi = _normal_cdf(lo), _normal_cdf(hi)
        u = rng.uniform(p_lo, p_hi, shape)
        if p_hi <= p_lo:  # the interval holds no representable mass: every draw sits on its edge
            z = np.full(shape, hi)
        else:
            z = np.clip(_normal_quantile(np.clip(u, np.nextafter(0, 1), np.nextafter(1, 0))), lo, hi)
        if flip:
            z = -z
        return np.clip(mean + sigma * z, a, b)


def _check_mode(owner: str, mode: Any, allowed: Sequence[str]) -> None:
    if mode not in allowed:
        raise ValueError(f"{owner}: mode must be one of {list(allowed)}, got mode={mode!r}")


class _HeBase(Initializer):
    def __init__(self, negative_slope: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> None:
        super().__init__(negative_slope=negative_slope, mode=mode, nonlinearity=nonlinearity)
        self.negative_slope, self.mode, self.nonlinearity = negative_slope, mode, nonlinearity

    def _scale(self, shape: Tuple[int, ...]) -> float:
        """The scale ``gain / sqrt(fan)`` for the chosen mode."""
        owner = type(self).__name__
        _check_mode(owner, self.mode, ("fan_in", "fan_out"))
        gain = calculate_gain(self.nonlinearity, self.negative_slope)
        fan_in, fan_out = fan_in_and_fan_out(shape)
        fan = fan_in if self.mode == "fan_in" else fan_out
        return gain / math.sqrt(fan)


class HeUniform(_HeBase):
    """Kaiming uniform: U(±sqrt(3) * gain / sqrt(fan))."""

    def _sample(self, shape, rng):
        bound = math.sqrt(3.0) * self._scale(shape)
        return rng.uniform(-bound, bound, shape)


class HeNormal(_HeBase):
    """Kaiming normal: N(0, (gain / sqrt(fan))**2)."""

    def _sample(self, shape, rng):
        return rng.normal(0.0, self._scale(shape), shape)


class XavierUniform(Initializer):
    """Glorot uniform: U(±gain * sqrt(6 / (fan_in + fan_out)))."""

    def __init__(self, gain: float = 1) -> None:
        super().__init__(gain=gain)
        self.gain = gain

    def _sample(self, shape, rng):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        bound = _real("XavierUniform", "gain", self.gain) * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)


class XavierNormal(Initializer):
    """Glorot normal: N(0, gain**2 * 2 / (fan_in + fan_out))."""

    def __init__(self, gain: float = 1) -> None:
        super().__init__(gain=gain)
        self.gain = gain

    def _sample(self, shape, rng):
        fan_in, fan_out = fan_in_and_fan_out(shape)
        std = _real("XavierNormal", "gain", self.gain) * math.sqrt(2.0 / (fan_in + fan_out))
        return rng.normal(0.0, std, shape)


class Constant(Initializer):
    """Every element equal to ``value`` (a number)."""

    def __init__(self, value: Any) -> None:
        super().__init__(value=value)
        self.value = value

    def _sample(self, shape, rng):
        if isinstance(self.value, (np.ndarray, list, tuple)):
            raise ValueError(f"Constant: value must be a single number, got value={_brief(self.value)}")
        try:
            value = _to_float(self.value)
        except (TypeError, ValueError):
            raise ValueError(f"Constant: value must be a real number, got value={_brief(self.value)}") from None
        return np.full(shape, value)

    def _explicit_non_finite(self) -> bool:
        try:
            return not math.isfinite(_to_float(self.value))
        except (TypeError, ValueError, OverflowError):
            return False


class One(Initializer):
    """All ones."""

    def _sample(self, shape, rng):
        return np.ones(shape)


class Zero(Initializer):
    """All zeros."""

    def _sample(self, shape, rng):
        return np.zeros(shape)


class Orthogonal(Initializer):
    """(Semi-)orthogonal matrix over ``(shape[0], prod(shape[1:]))``, times ``gain``."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__(gain=gain)
        self.gain = gain

    def _sample(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a tensor of at least 2 dimensions, got shape {shape}")
        gain = _real("Orthogonal", "gain", self.gain)
        rows = shape[0]
        cols = math.prod(shape[1:])
        flat = rng.normal(0.0, 1.0, (rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))  # makes the decomposition unique, hence the law uniform
        if rows < cols:
            q = q.T
        return gain * q


class Dirac(Initializer):
    """Identity-preserving kernel: 1 at the centre tap of channel pairs ``(g*opg + i, i)``."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__(groups=groups)
        self.groups = groups

    def _sample(self, shape, rng):
        if len(shape) not in (3, 4, 5):
            raise ValueError(f"Dirac needs a tensor of 3, 4 or 5 dimensions, got shape {shape}")
        groups = self.groups
        if type(groups) is not int or groups < 1:
            raise ValueError(f"Dirac: groups must be a positive int, got groups={_brief(groups)}")
        if shape[0] % groups:
            raise ValueError(
                f"Dirac: the first dimension must be divisible by groups, got shape {shape} and groups={_brief(groups)}"
            )
        out = np.zeros(shape)
        per_group = shape[0] // groups
        centre = tuple(s // 2 for s in shape[2:])
        for g in range(groups):
            for i in range(min(per_group, shape[1])):
                out[(g * per_group + i, i) + centre] = 1.0
        return out


class VarianceScaling(Initializer):
    """Variance scaling with ``scale / fan``; MindSpore samples ``'truncated_normal'`` as uniform."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal") -> None:
        super().__init__(scale=scale, mode=mode, distribution=distribution)
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def _sample(self, shape, rng):
        scale = _real("VarianceScaling", "scale", self.scale)
        if scale <= 0:
            raise ValueError(f"VarianceScaling: scale must be > 0, got scale={_brief(self.scale)}")
        _check_mode("VarianceScaling", self.mode, ("fan_in", "fan_out", "fan_avg"))
        if self.distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(
                f"VarianceScaling: distribution must be 'uniform', 'truncated_normal' "
                f"or 'untruncated_normal', got distribution={self.distribution!r}"
            )
        fan_in, fan_out = fan_in_and_fan_out(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale /= max(1.0, fan)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), shape)
        # MindSpore compares with the misspelt 'truncated_norm', so 'truncated_normal'
        # falls through to the uniform branch; we reproduce what it samples.
        limit = math.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, shape)


class Identity(Initializer):
    """Identity matrix (2-D tensors only)."""

    def _sample(self, shape, rng):
        if len(shape) != 2:
            raise ValueError(f"Identity needs a 2-D tensor, got shape {shape}")
        return np.eye(*shape)


class Sparse(Initializer):
    """2-D only: N(0, sigma**2) with a fraction ``sparsity`` of each column set to zero."""

    def __init__(self, sparsity: float, sigma: float = 0.01) -> None:
        super().__init__(sparsity=sparsity, sigma=sigma)
        self.sparsity, self.sigma = sparsity, sigma

    def _sample(self, shape, rng):
        if len(shape) != 2:
            raise ValueError(f"Sparse needs a 2-D tensor, got shape {shape}")
        rows, cols = shape
        sparsity = _real("Sparse", "sparsity", self.sparsity)
        out = rng.normal(0.0, _real("Sparse", "sigma", self.sigma), shape)
        zeros = int(math.ceil(sparsity * rows))
        for col in range(cols):
            out[rng.permutation(rows)[:zeros], col] = 0.0
        return out


_REGISTRY = {
    "normal": Normal,
    "uniform": Uniform,
    "truncatednormal": TruncatedNormal,
    "heuniform": HeUniform,
    "he_uniform": HeUniform,
    "henormal": HeNormal,
    "he_normal": HeNormal,
    "xavieruniform": XavierUniform,
    "xavier_uniform": XavierUniform,
    "xaviernormal": XavierNormal,
    "xavier_normal": XavierNormal,
    "one": One,
    "ones": One,
    "zero": Zero,
    "zeros": Zero,
    "orthogonal": Orthogonal,
    "dirac": Dirac,
    "variancescaling": VarianceScaling,
    "identity": Identity,
    "sparse": Sparse,
}


def _from_name(text: str, name: str) -> Initializer:
    cls = _REGISTRY.get(text.lower())
    if cls is None:
        raise ValueError(
            f"{name}={text!r} is not a known initializer; known names (any letter case): {', '.join(sorted(_REGISTRY))}"
        )
    if cls is Sparse:
        raise TypeError(f"{name}={text!r} needs arguments: pass Sparse(sparsity=...) instead")
    return cls()


def initializer(
    init: Any,
    shape: Sequence[int],
    dtype: Any = np.float32,
    *,
    rng: Optional[np.random.Generator] = None,
    name: str = "init",
) -> np.ndarray:
    """Make a parameter array from a MindSpore-style initializer.

    Args:
        init: an :class:`Initializer`, a registered name (any letter case: 'normal',
            'HeUniform', 'xavier_uniform', 'ones', ...), a number (means ``Constant``), or an
            array of exactly ``shape`` (copied; it keeps its own dtype, as a MindSpore Tensor does).
        shape: shape of the parameter.
        dtype: float16, float32 or float64 (any form :func:`convtranspose.dtypes.resolve_dtype`
            takes); ignored for an array ``init``.
        rng: NumPy generator; the module-level one (see :func:`set_seed`) when None.
        name: the argument name used in error messages (e.g. 'weight_init').

    Returns:
        A new array of shape ``shape``.

    Raises:
        TypeError: ``init`` of an unsupported type (lists and tuples included).
        ValueError: unknown name, an array of the wrong shape, or a bad initializer argument.
    """
    shape = tuple(shape)
    if isinstance(init, np.ndarray):
        if init.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got an array of shape {init.shape}")
        return init.copy()
    given = init
    if isinstance(init, str):
        init = _from_name(init, name)
    elif isinstance(init, numbers.Number):  # bool and NumPy scalars included, as in MindSpore
        init = Constant(init)
    elif not isinstance(init, Initializer):
        raise TypeError(
            f"{name} must be an Initializer, a name, a number or a NumPy array, got "
            f"{name}={init!r} (type {type(init).__name__})"
        )
    try:
        return init(shape, dtype, rng=rng)
    except (TypeError, ValueError) as exc:  # say which argument carried the initializer
        raise type(exc)(f"{name}={_brief(given)} cannot initialize a parameter of shape {shape}: {exc}") from None
