"""What `make demo` runs: the MindSpore page's example, output shapes per pad mode, and a figure.

The figure (the three pad modes side by side on a small image) needs matplotlib
(`pip install -e '.[demo]'`); without it the demo still runs and says how to get it.

    python examples/demo.py [--out FILE.png]     # default: build/demo_pad_modes.png
"""

import argparse
from pathlib import Path

import numpy as np

import convtranspose as ct

DEFAULT_FIGURE = "build/demo_pad_modes.png"  # build/ is git-ignored


def shapes_table() -> None:
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6)).astype(np.float32)
    header = f"{'pad_mode':<9} {'kernel':>6} {'stride':>6} {'dilation':>8} {'padding':>13}  output shape"
    print(f"input {x.shape}, 2 -> 4 channels")
    print(header)
    print("-" * len(header))
    for mode, kernel, stride, dilation, padding in [
        ("same", 3, 1, 1, 0),
        ("same", 4, 2, 1, 0),
        ("same", 1, 3, 1, 0),
        ("valid", 3, 1, 1, 0),
        ("valid", 5, 2, 1, 0),
        ("valid", 3, 2, 2, 0),
        ("pad", 4, 2, 1, 1),
        ("pad", 3, 2, 1, (1, 0, 2, 1)),
        ("pad", 3, 1, 2, 2),
    ]:
        layer = ct.Conv2dTranspose(
            2, 4, kernel, stride=stride, pad_mode=mode, padding=padding, dilation=dilation, has_bias=True
        )
        y = layer(x)
        layer.backward(np.ones_like(y))
        print(f"{mode:<9} {kernel:>6} {stride:>6} {dilation:>8} {str(padding):>13}  {y.shape}")


def pad_mode_outputs():
    """A 4x4 image upsampled x2 by a 3x3 tent kernel (bilinear weights) in each pad mode."""
    image = np.zeros((1, 1, 4, 4))
    image[0, 0, 1, 1] = image[0, 0, 2, 3] = 1.0
    image[0, 0, 3, 0] = 0.5
    tent = np.array([0.5, 1.0, 0.5])
    weight = np.outer(tent, tent).reshape(1, 1, 3, 3)
    bias = 0.1
    runs = [
        ("'same'", dict(pad_mode="same")),
        ("'valid'", dict(pad_mode="valid")),
        ("'pad', padding=1,\noutput_padding=1", dict(pad_mode="pad", padding=1, output_padding=1)),
    ]
    outputs = []
    for label, kwargs in runs:
        layer = ct.Conv2dTranspose(
            1, 1, 3, stride=2, has_bias=True, weight_init=weight, bias_init=np.array([bias]), dtype=np.float64, **kwargs
        )
        outputs.append((label, layer(image)[0, 0]))
    return image[0, 0], bias, outputs


def write_figure(path: Path) -> bool:
    """Draw the input and the three pad modes' outputs; False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    image, bias, outputs = pad_mode_outputs()
    vmax = max(out.max() for _, out in outputs)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.9), gridspec_kw={"width_ratios": [4, 8, 9, 8]})
    panels = [("input x (4x4)", image)] + [(f"{label} -> {out.shape[0]}x{out.shape[1]}", out) for label, out in outputs]
    for ax, (title, data) in zip(axes, panels):
        shown = ax.imshow(data, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(data.shape[1]))
        ax.set_yticks(range(data.shape[0]))
        ax.tick_params(labelsize=7)
    axes[3].text(
        0.5,
        -0.2,
        "last row and column: output_padding, exact 0 (no bias)",
        transform=axes[3].transAxes,
        ha="center",
        va="top",
        fontsize=8,
    )
    fig.colorbar(shown, ax=axes, fraction=0.015, pad=0.02)
    fig.suptitle(
        f"Conv2dTranspose(1, 1, 3, stride=2), weight = 3x3 tent, bias {bias}: the same input in each pad_mode",
        fontsize=11,
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The convtranspose demo.")
    parser.add_argument(
        "--out", default=DEFAULT_FIGURE, help=f"where to write the pad-mode figure (default {DEFAULT_FIGURE})"
    )
    opts = parser.parse_args(argv)

    ct.set_seed(0)
    net = ct.Conv2dTranspose(3, 64, 4, has_bias=False, weight_init="normal", pad_mode="pad")
    x = np.ones((1, 3, 16, 50), np.float32)
    print("MindSpore's example: Conv2dTranspose(3, 64, 4, pad_mode='pad') on (1, 3, 16, 50) ->", net(x).shape)
    print()
    shapes_table()
    print()

    path = Path(opts.out).resolve()
    if write_figure(path):
        print(f"figure of the three pad modes written to {path}")
    else:
        print(
            "matplotlib is not installed, so no figure was drawn. For the figure of the three pad modes "
            "side by side: pip install -e '.[demo]' (in this project's venv: .venv/bin/pip install -e "
            "'.[demo]'), then run the demo again."
        )
    print("The guide, with figures of every rule: docs/README.md")


if __name__ == "__main__":
    main()
