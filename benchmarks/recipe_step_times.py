"""Time one training step of candidate recipes, to estimate how many epochs fit a wall-clock budget.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/recipe_step_times.py --steps 5 --batch 256

For each model (a registry name, or a key of CANDIDATES below: a registry
name with overridden arguments) it builds the model, runs ``--warmup`` untimed
steps, then ``--steps`` timed steps, the models taking turns, of: the recipe's augmentation
(:func:`minigru.data.augmentation` of its ``augment``, e.g. crop + flip) and normalisation of a uint8 batch,
forward, cross-entropy with label smoothing, backward, SGD with Nesterov momentum, with glibc's
memory tuning that ``minigru train`` applies (:func:`minigru.perf.tune_host_memory`). It
prints the median seconds per step and the forward multiply-adds per image
(counted by :func:`macs`), and, from the median, the epochs of ``--train``
images that fit in ``--budget`` minutes (training steps only; evaluation
passes come on top). ``--layers`` then times each layer's forward and backward;
``--kernels`` times the whole step again with every Conv2d forced to ``im2col``
or left on ``auto`` (Winograd where ``minigru.functional.winograd.conv_algorithm``
picks it), each with the NumPy and the numba elementwise engine
(``minigru.engine``; numba needs ``pip install 'minigru[fast]'``), the four
configurations taking turns for ``--rounds`` rounds:

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/recipe_step_times.py --models cnn-gru-fast \
        --steps 6 --warmup 1 --kernels

Step times on a shared machine are slower and noisier than on a quiet one:
say which it was, and time a reference model (cnn-gru-bn, whose full run is
measured in docs/models.md) in the same call to compare.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import minigru.perf
from minigru import engine, nn, optim
from minigru.data import Compose, Normalize, ToFloat, augmentation
from minigru.models import build_model, default_recipe

# Variants timed while the recipes were sized (docs/models.md, "Sizing the recipes"): airbench's layout, whose
# whitening keeps overlapping patches (stride 1) and whose first block runs at 31x31.
CANDIDATES = {
    "airbench-32-64-128": ("cnn-gru-fast", {"whiten_stride": 1, "widths": (32, 64, 128), "convs_per_block": 1}),
    "airbench-64-128-256-c122": ("cnn-gru-hour", {"whiten_stride": 1, "widths": (64, 128, 256),
                                                "convs_per_block": (1, 2, 2)}),
    # cnn-gru-hour before it took airbench's layout (its 15-epoch runs: docs/models.md, "The hour recipe, measured").
    "stride2-128-256": ("cnn-gru-hour", {"whiten_stride": 2, "widths": (128, 256)}),
}


def macs(model, x) -> int:
    """Forward multiply-adds per image of the Conv2d, PatchWhitening, GRU and Linear layers (x: one batch)."""
    total = 0
    hooks = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.PatchWhitening)):
            original = module.forward

            def counting(inp, _m=module, _f=original):
                out = _f(inp)
                nonlocal total
                total += out.size // out.shape[0] * int(np.prod(_m.weight.shape[1:]))
                return out
            module.forward = counting
            hooks.append(module)
    out = model(x)
    for module in hooks:
        del module.forward
    for module in model.modules():
        if isinstance(module, nn.GRU):
            steps = model.sequence_length
            per_dir = sum(3 * module.hidden_size * (p.shape[1]) for n, p in module.named_parameters()
                          if n.startswith("weight_") and not n.endswith("_reverse"))
            total += steps * per_dir * (2 if module.bidirectional else 1)
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
    del out
    return total


def make_step(name, overrides, batch, seed=0, replicas=1):
    """(step function, forward MACs per image, model) for one candidate; the step runs one training batch
    (split over ``replicas`` copies of the model, one thread each, with ``replicas`` > 1: nn.DataParallel)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, batch).astype(np.int64)
    transform = Compose([ToFloat(), *augmentation(default_recipe(name)["augment"], (32, 32)),
                         Normalize([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])])
    model = build_model(name, rng=seed, **overrides)
    first = transform(images, rng, ids=np.arange(batch), epoch=0).astype(np.float32)
    if hasattr(model, "initialize_from_data"):
        model.initialize_from_data(first)
    count = macs(model, first[:4])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    net = nn.DataParallel(model, replicas) if replicas > 1 else model

    ids, epoch = np.arange(batch), [0]       # sample indices and epoch, for augmentations that use them

    def step():
        epoch[0] += 1
        x = transform(images, rng, ids=ids, epoch=epoch[0]).astype(np.float32)
        opt.zero_grad()
        loss_fn(net(x), labels)
        net.backward(loss_fn.backward())
        opt.step()
    return step, count, model


def layer_times(model, step, steps) -> list:
    """[(name, forward ms, backward ms)] per step for each leaf module of ``model``, over ``steps`` steps.

    Each leaf's ``forward`` and ``backward`` are wrapped by timers for the measurement and restored after it.
    """
    totals = {}
    leaves = [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    for name, module in leaves:
        totals[name] = [0.0, 0.0]
        for slot, attr in enumerate(("forward", "backward")):
            def timed(*args, _f=getattr(module, attr), _t=totals[name], _i=slot, **kwargs):
                start = time.perf_counter()
                out = _f(*args, **kwargs)
                _t[_i] += time.perf_counter() - start
                return out
            setattr(module, attr, timed)
    try:
        for _ in range(steps):
            step()
    finally:
        for _, module in leaves:
            del module.forward, module.backward
    return [(f"{name} ({type(module).__name__})", 1e3 * totals[name][0] / steps, 1e3 * totals[name][1] / steps)
            for name, module in leaves]


KERNEL_CONFIGS = tuple((algorithm, name) for algorithm in ("im2col", "auto") for name in engine.ENGINES)
"""(convolution algorithm, elementwise engine) pairs that ``--kernels`` times."""


def kernel_times(model, step, steps, rounds) -> dict:
    """{(algorithm, engine): [mean seconds per step, one per round]} over :data:`KERNEL_CONFIGS`.

    Each configuration runs one untimed step first (work arrays, the engine's compilation), then ``steps`` timed
    ones; the configurations take turns, so that a change in the machine's load hits all alike. The model's
    convolutions are left on ``auto`` afterwards.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    results = {}
    try:
        for _ in range(rounds):
            for algorithm, name in KERNEL_CONFIGS:
                for conv in convs:
                    conv.algorithm = algorithm
                with engine.use_engine(name):
                    step()
                    start = time.perf_counter()
                    for _ in range(steps):
                        step()
                    results.setdefault((algorithm, name), []).append((time.perf_counter() - start) / steps)
    finally:
        for conv in convs:
            conv.algorithm = "auto"
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["cnn-gru-bn", "cnn-gru-fast", "cnn-gru-hour"],
                        help=f"registry names or candidates: {', '.join(CANDIDATES)}")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--train", type=int, default=50_000, help="training images per epoch")
    parser.add_argument("--budget", type=float, default=10.0, help="minutes")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--layers", action="store_true",
                        help="then time each layer's forward and backward (ms per step, mean of --steps steps)")
    parser.add_argument("--kernels", action="store_true",
                        help="then time the step with each convolution algorithm (im2col, auto) and elementwise "
                             "engine (numpy, numba), taking turns: mean s/step of --steps steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --kernels")
    parser.add_argument("--replicas", type=int, nargs="*", default=[1],
                        help="time each model with each of these replica counts (nn.DataParallel, one thread "
                             "each), e.g. --replicas 1 2")
    args = parser.parse_args(argv)
    if args.kernels and not engine.numba_available():
        parser.error("--kernels times the numba engine too: pip install 'minigru[fast]'")
    minigru.perf.tune_host_memory()          # as `minigru train` does: without it, page faults add 40-60%
    runs = {}
    if not args.replicas or min(args.replicas) < 1 or (args.replicas != [1] and (args.layers or args.kernels)):
        parser.error("--replicas takes counts >= 1, and times whole steps only (not with --layers or --kernels)")
    for key in args.models:
        name, overrides = CANDIDATES.get(key, (key, {}))
        for replicas in args.replicas:
            step, count, model = make_step(name, overrides, args.batch, replicas=replicas)
            for _ in range(args.warmup):
                step()
            runs[key if replicas == 1 else f"{key} x{replicas}"] = (step, count, model, [])
    for _ in range(args.steps):               # interleaved, so that a change in the machine's load hits all alike
        for step, _, _, times in runs.values():
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    rows = []
    for key, (_, count, model, times) in runs.items():
        median, best = statistics.median(times), min(times)
        epoch_s = median * (args.train // args.batch)
        row = dict(model=key, batch=args.batch, median_s=round(median, 4), min_s=round(best, 4),
                   ms_per_image=round(1000 * median / args.batch, 3), mmacs_per_image=round(count / 1e6, 2),
                   parameters=model.num_parameters(), epoch_minutes=round(epoch_s / 60, 2),
                   epochs_in_budget=round(60 * args.budget / epoch_s, 1))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.layers:
        for key, (step, _, model, times) in runs.items():
            layers = layer_times(model, step, args.steps)
            total = sum(f + b for _, f, b in layers)
            print(f"\n{key}: ms per step, mean of {args.steps} steps (the step's median was "
                  f"{1e3 * statistics.median(times):.0f} ms)")
            print(f"{'layer':<32}{'forward':>10}{'backward':>10}{'share':>8}")
            for name, f, b in layers:
                print(f"{name:<32}{f:>10.1f}{b:>10.1f}{(f + b) / total:>8.1%}")
            print(f"{'all layers':<32}{sum(f for _, f, _ in layers):>10.1f}{sum(b for _, _, b in layers):>10.1f}")
    if args.kernels:
        for key, (step, _, model, _) in runs.items():
            for (algorithm, name), times in kernel_times(model, step, args.steps, args.rounds).items():
                print(f"{key}  convolutions {algorithm:7s} engine {name:6s} "
                      + "  ".join(f"{t:.3f}" for t in times) + "  s/step")


if __name__ == "__main__":
    main()
