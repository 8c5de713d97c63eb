"""The elementwise engines against each other: plain NumPy, and numba on 1 and on 2 threads.

    python benchmarks/elementwise_engines.py                  # GRU, LSTM, batch norm and SGD (a few minutes)
    python benchmarks/elementwise_engines.py --parts gru,sgd  # some parts only
    python benchmarks/elementwise_engines.py --tiny           # tiny shapes: checks that it runs

Cases (float32, as in training):

* ``gru``: ``nn.GRU`` forward+backward at bench_vs_torch.py's three GRU shapes (B, T, I, H, layers);
  the engine changes the elementwise gate arithmetic of each step (reset_after, PyTorch's
  convention); the GEMMs are the same BLAS calls in every column.
* ``lstm``: ``nn.LSTM`` forward+backward at the same shapes.
* ``bn``: ``batchnorm_forward`` + ``batchnorm_backward`` in training mode at the output shapes of
  bench_vs_torch.py's three convolutions (N, C, H, W).
* ``sgd``: one ``SGD(lr, momentum=0.9, nesterov=True, weight_decay=5e-4)`` step over all the
  parameters of a registered model (``--sgd-model``, default seed-cnn: 2.7M parameters).

Each case is timed for every engine in turns (a round of each, the order rotating, so that load
from other programs hits all alike); the table gives the median milliseconds and the speed-up
over NumPy. The BLAS library gets ``--blas-threads`` threads (default 1) in every column, so the
columns differ only in the elementwise work. Before timing, the numba results are compared with
NumPy's (a mismatch stops the benchmark). The first numba call compiles the kernels (or loads
them from numba's cache); it is not timed. Needs numba: ``pip install 'minigru[fast]'``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minigru.perf  # noqa: E402
from minigru import engine, nn  # noqa: E402
from minigru.functional import batchnorm_backward, batchnorm_forward  # noqa: E402
from minigru.models.registry import build_model, model_names  # noqa: E402
from minigru.optim import SGD  # noqa: E402

F32 = np.float32
GRU_SHAPES = [(64, 32, 96, 128, 1), (64, 8, 1024, 256, 2), (128, 64, 256, 512, 1)]   # B, T, I, H, layers
BN_SHAPES = [(64, 32, 32, 32), (64, 64, 16, 16), (64, 128, 8, 8)]                     # N, C, H, W
TINY = {"gru": [(2, 3, 4, 5, 1), (3, 2, 4, 5, 2)], "bn": [(2, 3, 4, 4)]}
PARTS = ("gru", "lstm", "bn", "sgd")
ENGINES = [("numpy", None), ("numba", 1), ("numba", 2)]   # (engine, numba threads)


def recurrent_case(rng, kind, batch, steps, inputs, hidden, layers):
    """(label, run) where run() does one forward+backward and returns the output and all gradients."""
    layer = {"GRU": nn.GRU, "LSTM": nn.LSTM}[kind](inputs, hidden, num_layers=layers, rng=0, dtype=F32)
    x = rng.standard_normal((steps, batch, inputs)).astype(F32)
    dout = rng.standard_normal((steps, batch, hidden)).astype(F32)

    def run():
        out, _ = layer(x)
        layer.zero_grad()
        dx = layer.backward(dout)[0]
        return [out.copy(), dx] + [p.grad.copy() for p in layer.parameters()]
    return f"{kind} fwd+bwd B{batch} T{steps} I{inputs} H{hidden}" + (f" L{layers}" if layers > 1 else ""), run


def bn_case(rng, n, c, h, w):
    x = rng.standard_normal((n, c, h, w)).astype(F32)
    dout = rng.standard_normal((n, c, h, w)).astype(F32)
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(F32), rng.standard_normal(c).astype(F32)
    mean, var = np.zeros(c, F32), np.ones(c, F32)

    def run():
        out, cache = batchnorm_forward(x, gamma, beta, mean, var, training=True)
        dx, dgamma, dbeta = batchnorm_backward(dout, cache)
        return [out, dx, dgamma, dbeta]
    return f"batch norm fwd+bwd N{n} C{c} {h}x{w}", run


def sgd_case(rng, model_name):
    model = build_model(model_name, rng=0, dtype=F32)
    params = list(model.parameters())
    start = [p.data.copy() for p in params]
    for p in params:
        p.grad[...] = rng.standard_normal(p.data.shape).astype(F32)
    count = sum(p.data.size for p in params)
    state = {}

    def run():
        # a fresh optimizer per engine; the first (untimed) call fills its momentum buffers
        key = (engine.get_engine(), engine.engine_threads())
        if key not in state:
            for p, w in zip(params, start):
                p.data[...] = w
            state[key] = SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
            state[key].step()
            state[key].snapshot = [p.data.copy() for p in params]   # after step 1: the check's values
        state[key].step()
        return state[key].snapshot
    return f"SGD Nesterov step, {model_name} ({count / 1e6:.1f}M params)", run


def compare(label, reference, got):
    for i, (a, b) in enumerate(zip(reference, got)):
        scale = max(float(np.abs(a).max()), 1e-30)
        err = float(np.abs(a - b).max()) / scale
        if not err <= 1e-3:   # float32, two different tanh: 1e-6 typical; 1e-3 means a real bug
            raise SystemExit(f"elementwise_engines: {label}: numba result {i} differs from NumPy's by {err:.2e}")


def measure(label, run, args):
    """Median ms per engine, timed in rotating rounds."""
    columns = ENGINES if args.numba else ENGINES[:1]
    reference = None
    for name, threads in columns:                     # warm-up, compilation and the correctness check
        engine.set_engine(name, threads)
        result = run()
        if reference is None:
            reference = [np.array(r) for r in result]
        else:
            compare(label, reference, result)
    times = {col: [] for col in columns}
    for round_ in range(args.rounds):
        order = columns[round_ % len(columns):] + columns[:round_ % len(columns)]
        for col in order:
            engine.set_engine(*col)
            deadline = time.perf_counter() + args.round_seconds
            while True:
                start = time.perf_counter()
                run()
                times[col].append(time.perf_counter() - start)
                if time.perf_counter() >= deadline:
                    break
    engine.set_engine("numpy")
    return {col: 1e3 * float(np.median(t)) for col, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {','.join(PARTS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and one short round: a smoke test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=0.5)
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads in every column (threadpoolctl)")
    parser.add_argument("--sgd-model", choices=model_names(), default="seed-cnn")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {sorted(set(parts) - set(PARTS))}; choose from {PARTS}")
    if args.tiny:
        args.rounds, args.round_seconds = 2, 0.01
    args.numba = engine.numba_available()
    if not args.numba:
        print("numba is not installed (pip install 'minigru[fast]'): only the NumPy column is timed")
    minigru.perf.tune_host_memory()
    try:
        import threadpoolctl  # noqa: PLC0415
        limits = threadpoolctl.threadpool_limits(args.blas_threads, user_api="blas")
    except ImportError:
        limits = None
        print("threadpoolctl is not installed: BLAS uses its default threads")
    rng = np.random.default_rng(0)
    cases = []
    for kind in ("gru", "lstm"):
        if kind in parts:
            cases += [recurrent_case(rng, kind.upper(), *s) for s in (TINY["gru"] if args.tiny else GRU_SHAPES)]
    if "bn" in parts:
        cases += [bn_case(rng, *s) for s in (TINY["bn"] if args.tiny else BN_SHAPES)]
    if "sgd" in parts:
        cases.append(sgd_case(rng, "row-gru" if args.tiny else args.sgd_model))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, BLAS threads {args.blas_threads}, "
          f"numpy {np.__version__}" + (f", numba {sys.modules['numba'].__version__}" if args.numba else ""))
    columns = ENGINES if args.numba else ENGINES[:1]
    head = ["case", *(f"{n}" + (f" {t}T" if t else "") + " ms" for n, t in columns), *(
        f"x{t}T" for n, t in columns if t)]
    rows = []
    for label, run in cases:
        ms = measure(label, run, args)
        base = ms[columns[0]]
        rows.append([label, *(f"{ms[c]:.2f}" for c in columns), *(f"{base / ms[c]:.2f}" for c in columns[1:])])
        print("  " + " | ".join(rows[-1]), flush=True)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print()
    for r in [head, ["-" * w for w in widths], *rows]:
        print(" | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    print("x2T / x1T: NumPy's time over numba's (above 1: numba is faster)")
    if limits is not None:
        limits.restore_original_limits()


if __name__ == "__main__":
    main()
