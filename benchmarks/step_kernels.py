"""One training step of a registered model with each convolution algorithm and elementwise engine.

    OPENBLAS_NUM_THREADS=1 python benchmarks/step_kernels.py cnn-gru-fast
    OPENBLAS_NUM_THREADS=1 python benchmarks/step_kernels.py cnn-gru-hour --rounds 2 --steps 6

The step is the recipes' (docs/models.md): forward, cross-entropy with label
smoothing 0.2, backward, SGD with Nesterov momentum and weight decay, on a
random float32 batch of 256 images. Four configurations take turns in one
process: every Conv2d forced to ``im2col`` or left on ``auto`` (Winograd where
``minigru.functional.winograd.conv_algorithm`` picks it), each with the NumPy
and the numba engine (``minigru.engine``; the numba columns need
``pip install 'minigru[fast]'``). It prints the mean seconds per step of each
round. docs/performance.md ("Results") quotes it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from minigru import engine, nn, optim
from minigru.models import build_model, model_names


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=model_names())
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    model = build_model(args.model, rng=0, dtype=np.float32)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    if hasattr(model, "initialize_from_data"):
        model.initialize_from_data(x)
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]

    def step():
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    def seconds_per_step():
        step()                                    # warm-up: work arrays, the engine's compilation
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return (time.perf_counter() - start) / args.steps

    results = {}
    for _ in range(args.rounds):
        for algorithm in ("im2col", "auto"):
            for name in ("numpy", "numba"):
                for conv in convs:
                    conv.algorithm = algorithm
                with engine.use_engine(name):
                    results.setdefault((algorithm, name), []).append(seconds_per_step())
    for (algorithm, name), times in results.items():
        print(f"{args.model}  convolutions {algorithm:7s} engine {name:6s} "
              + "  ".join(f"{t:.3f}" for t in times) + "  s/step")


if __name__ == "__main__":
    main()
