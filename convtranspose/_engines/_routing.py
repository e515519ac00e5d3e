"""Route-choice rules that more than one engine follows, each written once.

Every engine's planner decides its own routes; where two of them apply the same measured
rule, it lives here so that a re-measurement changes both.
"""

# Output channels per group, per input column, from which channels-last pays (see
# :func:`rows_are_short`).
CHANNELS_PER_COLUMN = 16


def rows_are_short(channels_per_group: int, width: int) -> bool:
    """True when an image's rows are short next to its channel count: channels-last pays.

    A column route in NCHW order adds taps along rows of ``width`` values; channels-last adds
    along ``channels_per_group`` contiguous values instead, which wins once there are at
    least :data:`CHANNELS_PER_COLUMN` channels per input column (the NumPy and the JAX
    engines' ``col2im_nhwc`` routes, chosen on the benchmark shapes).

    Args:
        channels_per_group: the output channels of one group (``Cout // group``).
        width: the input's width ``W``.

    Returns:
        ``channels_per_group >= 16 * width``.

    Example:
        >>> rows_are_short(64, 4), rows_are_short(64, 5)
        (True, False)
    """
    return channels_per_group >= CHANNELS_PER_COLUMN * width
