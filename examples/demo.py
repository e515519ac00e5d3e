"""What `make demo` runs: the MindSpore page's example, then output shapes per pad mode."""

import numpy as np

import convtranspose as ct


def main() -> None:
    ct.set_seed(0)
    net = ct.Conv2dTranspose(3, 64, 4, has_bias=False, weight_init="normal", pad_mode="pad")
    x = np.ones((1, 3, 16, 50), np.float32)
    print("MindSpore's example: Conv2dTranspose(3, 64, 4, pad_mode='pad') on (1, 3, 16, 50) ->",
          net(x).shape)
    print()

    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6)).astype(np.float32)
    header = f"{'pad_mode':<9} {'kernel':>6} {'stride':>6} {'dilation':>8} {'padding':>13}  output shape"
    print(f"input {x.shape}, 2 -> 4 channels")
    print(header)
    print("-" * len(header))
    for mode, kernel, stride, dilation, padding in [
            ("same", 3, 1, 1, 0), ("same", 4, 2, 1, 0), ("same", 1, 3, 1, 0),
            ("valid", 3, 1, 1, 0), ("valid", 5, 2, 1, 0), ("valid", 3, 2, 2, 0),
            ("pad", 4, 2, 1, 1), ("pad", 3, 2, 1, (1, 0, 2, 1)), ("pad", 3, 1, 2, 2)]:
        layer = ct.Conv2dTranspose(2, 4, kernel, stride=stride, pad_mode=mode, padding=padding,
                                   dilation=dilation, has_bias=True)
        y = layer(x)
        layer.backward(np.ones_like(y))
        print(f"{mode:<9} {kernel:>6} {stride:>6} {dilation:>8} {str(padding):>13}  {y.shape}")


if __name__ == "__main__":
    main()
