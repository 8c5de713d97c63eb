"""im2col against Winograd F(2x2, 3x3) and F(4x4, 3x3) on the 3x3 stride-1 convolutions that minigru trains.

    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_algorithms.py              # batch 256, 7 runs each
    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_algorithms.py --batch 2 --repeats 1   # a smoke test
    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_algorithms.py --match "hour 2"       # some shapes only
    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_algorithms.py --rounds 3 --repeats 3  # on a busy machine

Shapes: the convolutions of the registered models cnn-gru-fast (after the stride-2 patch whitening,
24 channels at 16x16), cnn-gru-hour (after the stride-1 whitening, 24 channels at 31x31; its "old"
rows are the stride-2 layout it had before) and the CONV_SHAPES of bench_vs_torch.py, all 3x3 with
padding 1, float32, at ``--batch`` images (bench_vs_torch's shapes keep their own batch of 64).

For every shape and algorithm it times, as the median of ``--repeats`` runs after one warm-up:

* forward: ``conv2d_forward(..., algorithm=...)``;
* weight grad: ``conv2d_backward(..., need_dx=False)`` (what the first layer of a model runs,
  whose input needs no gradient);
* input grad: ``conv2d_backward(..., need_dx=True)`` minus the weight-grad time;
* step: forward + the whole backward, the layer's share of a training step.

``--rounds R`` measures every shape R times, the algorithms in turn within each round, and prints the
smallest of the R medians: on a machine that runs other work, load that comes and goes then slows all
algorithms alike instead of the one that happened to run during it.

The "winograd/im2col" and "winograd4/im2col" rows are the times of F(2x2, 3x3) and F(4x4, 3x3) as a
fraction of im2col's (below 1: Winograd is faster), and the "auto" column what ``algorithm="auto"``
chooses for the shape (functional/winograd.py, WINOGRAD_MIN_CHANNELS and WINOGRAD_MIN_BATCH).
Timings are only worth quoting from a quiet machine; name its CPU (``lscpu``) with them.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import minigru.functional as F  # noqa: E402
import minigru.perf  # noqa: E402
from bench_vs_torch import CONV_SHAPES  # noqa: E402
from minigru.functional.winograd import WINOGRAD_OUTPUT_BLOCK, conv_algorithm  # noqa: E402
from profile_breakdown import median_ms  # noqa: E402  (one timing rule for the benchmark scripts)

# (name, batch or None for --batch, C_in, C_out, image size)
MODEL_SHAPES = [
    ("fast 24->64 @16", None, 24, 64, 16), ("fast 64->128 @8", None, 64, 128, 8),
    ("fast 128->128 @4", None, 128, 128, 4),
    ("hour 24->64 @31", None, 24, 64, 31), ("hour 64->64 @15", None, 64, 64, 15),
    ("hour 64->256 @15", None, 64, 256, 15), ("hour 256->256 @7", None, 256, 256, 7),
    ("hour 256->256 @3", None, 256, 256, 3),
    ("old hour 24->128 @16", None, 24, 128, 16), ("old hour 128->128 @8", None, 128, 128, 8),
    ("old hour 128->256 @8", None, 128, 256, 8), ("old hour 256->256 @4", None, 256, 256, 4),
]
BENCH_SHAPES = [(f"bench {p['C']}->{p['K']} @{p['S']}", p["N"], p["C"], p["K"], p["S"]) for p in CONV_SHAPES]
ALGORITHMS = ("im2col", *WINOGRAD_OUTPUT_BLOCK)          # im2col, winograd, winograd4


def time_algorithm(x, w, dout, algorithm, repeats) -> dict:
    """Median milliseconds of one 3x3 padding-1 layer's forward, weight gradient and whole backward pass."""
    def forward():
        return F.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm)

    cache = forward()[1]
    return {"forward": median_ms(forward, repeats),
            "weight grad": median_ms(lambda: F.conv2d_backward(dout, cache, need_dx=False), repeats),
            "backward": median_ms(lambda: F.conv2d_backward(dout, cache, need_dx=True), repeats)}


def columns_of(times) -> dict:
    """The printed columns from :func:`time_algorithm`'s times: forward, weight grad, input grad, step."""
    return {"forward": times["forward"], "weight grad": times["weight grad"],
            "input grad": times["backward"] - times["weight grad"], "step": times["forward"] + times["backward"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per batch for the model shapes")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--match", default="", help="only the shapes whose name contains this text, e.g. 'hour'")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each shape this many times, the algorithms interleaved, and keep the smallest")
    args = parser.parse_args(argv)
    minigru.perf.tune_host_memory()
    rng = np.random.default_rng(0)
    columns = ("forward", "weight grad", "input grad", "step")
    best = f"smallest of {args.rounds} rounds of the " if args.rounds > 1 else ""
    print(f"3x3 convolutions, stride 1, padding 1, float32; {best}median of {args.repeats} runs, ms "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    header = f"{'shape':<22}{'N':>5} {'algorithm':<16}" + "".join(f"{c:>12}" for c in columns)
    print(header + f"{'auto':>10}")
    print("-" * (len(header) + 10))
    shapes = [shape for shape in MODEL_SHAPES + BENCH_SHAPES if args.match in shape[0]]
    if not shapes:
        parser.error(f"no shape name contains {args.match!r}")
    for name, batch, c_in, c_out, size in shapes:
        n = args.batch if batch is None else min(batch, args.batch)
        x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
        dout = rng.standard_normal((n, c_out, size, size)).astype(np.float32)
        best = {}
        for _ in range(args.rounds):      # the algorithms in turn, each round; the smallest time of each
            for a in ALGORITHMS:
                times = time_algorithm(x, w, dout, a, args.repeats)
                best[a] = {k: min(t, best.get(a, times)[k]) for k, t in times.items()}
        results = {a: columns_of(best[a]) for a in ALGORITHMS}
        for a in ALGORITHMS:
            print(f"{name:<22}{n:>5} {a:<16}" + "".join(f"{results[a][c]:>12.2f}" for c in columns))
        for a in ALGORITHMS[1:]:
            ratio = "".join(f"{results[a][c] / max(results['im2col'][c], 1e-9):>12.2f}" for c in columns)
            auto = conv_algorithm('auto', 3, 1, c_in, c_out, n) if a == ALGORITHMS[1] else ""
            print(f"{'':<22}{'':>5} {a + '/im2col':<16}" + ratio + f"{auto:>10}")


if __name__ == "__main__":
    main()
