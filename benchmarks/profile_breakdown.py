"""Where does minigru's time go? The matrix products against everything else, for the benchmark's shapes.

    python benchmarks/profile_breakdown.py            # GRU and convolution breakdowns (about a minute)
    python benchmarks/profile_breakdown.py --part gru

For each GRU shape of bench_vs_torch.py it times minigru's forward+backward, then the *same matrix
products alone* (input projections, the recurrent product of every step forward and backward, the
weight and input gradients) on arrays of the same shapes. What is left is the elementwise gate
arithmetic and the copies. For the convolutions it times the three GEMMs of each layer (forward,
weight gradient, column gradient) in minigru's im2col layout, the floor of any im2col convolution
on this BLAS. docs/performance.md quotes the results.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import minigru.perf
from minigru import nn

F32 = np.float32
GRU_SHAPES = [(64, 32, 96, 128, 1), (64, 8, 1024, 256, 2), (128, 64, 256, 512, 1)]   # B, T, I, H, layers
CONV_SHAPES = [(64, 3, 32, 32), (64, 32, 64, 16), (64, 64, 128, 8)]                   # N, C_in, C_out, size


def median_ms(run, repeats=7):
    run()                                   # warm-up: allocations, BLAS thread start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def gru_gemms(rng, batch, steps, inputs, hidden):
    """The matrix products of one GRU layer's forward+backward, without anything around them."""
    x = rng.standard_normal((steps * batch, inputs)).astype(F32)
    w_ih = rng.standard_normal((3 * hidden, inputs)).astype(F32)
    w_hh = rng.standard_normal((3 * hidden, hidden)).astype(F32)
    h = rng.standard_normal((hidden, batch)).astype(F32)
    gates = np.empty((3 * hidden, batch), F32)
    da_step = rng.standard_normal((3 * hidden, batch)).astype(F32)
    dh = np.empty((hidden, batch), F32)
    da_all = rng.standard_normal((steps * batch, 3 * hidden)).astype(F32)
    states = rng.standard_normal((steps * batch, hidden)).astype(F32)

    def run():
        x @ w_ih.T                                       # all input projections, one GEMM
        for _ in range(steps):
            np.matmul(w_hh, h, out=gates)                # recurrent product, forward
        for _ in range(steps):
            np.matmul(w_hh.T, da_step, out=dh)           # recurrent product, backward
        da_all.T @ x                                     # dW_ih
        da_all.T @ states                                # dW_hh
        da_all @ w_ih                                    # dx
    return run


def profile_gru(rng):
    print("GRU forward+backward, float32: total against the same GEMMs alone")
    for batch, steps, inputs, hidden, layers in GRU_SHAPES:
        gru = nn.GRU(inputs, hidden, num_layers=layers, rng=0, dtype=F32)
        x = rng.standard_normal((steps, batch, inputs)).astype(F32)
        dout = rng.standard_normal((steps, batch, hidden)).astype(F32)

        def step():
            gru(x)
            gru.backward(dout)
        total = median_ms(step)
        gemm = sum(median_ms(gru_gemms(rng, batch, steps, inputs if layer == 0 else hidden, hidden))
                   for layer in range(layers))
        print(f"  B{batch} T{steps} I{inputs} H{hidden} L{layers}: total {total:7.2f} ms | GEMMs alone "
              f"{gemm:7.2f} ms ({100 * gemm / total:3.0f}%) | the rest {total - gemm:6.2f} ms")


def profile_conv(rng):
    print("Conv2d 3x3 padding 1, float32: the three GEMMs of the im2col formulation alone")
    total = 0.0
    for n, c_in, c_out, size in CONV_SHAPES:
        weight = rng.standard_normal((c_out, c_in * 9)).astype(F32)
        cols = rng.standard_normal((c_in * 9, n * size * size)).astype(F32)
        dout = rng.standard_normal((c_out, n * size * size)).astype(F32)

        def gemms():
            weight @ cols                                # forward
            dout @ cols.T                                # weight gradient
            weight.T @ dout                              # column gradient (before col2im)
        ms = median_ms(gemms, repeats=9)
        total += ms
        print(f"  N{n} {c_in}->{c_out} {size}x{size}: {ms:6.2f} ms")
    print(f"  all three layers: {total:.2f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "gru", "conv"), default="all")
    args = parser.parse_args(argv)
    minigru.perf.tune_host_memory()                      # as the benchmark's minigru worker does
    rng = np.random.default_rng(0)
    for lib in minigru.perf.blas_info() or [{"internal_api": "BLAS (threadpoolctl not installed)"}]:
        print("BLAS:", *(f"{lib[k]}" for k in ("internal_api", "version", "architecture") if k in lib),
              f"{lib.get('num_threads', '?')} threads")
    if args.part in ("all", "gru"):
        profile_gru(rng)
    if args.part in ("all", "conv"):
        profile_conv(rng)


if __name__ == "__main__":
    main()
