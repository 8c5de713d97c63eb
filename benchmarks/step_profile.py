"""Where a train step's time goes, minigru against PyTorch, by kind of layer: bench_vs_torch.py's step cases.

    python benchmarks/step_profile.py                  # minigru with two replicas (--replicas 2), torch on 2 threads
    python benchmarks/step_profile.py --replicas 1     # minigru as one model on all BLAS threads
    python benchmarks/step_profile.py --models cnngru --steps 10    # one model, fewer steps (a smoke test)

Each framework runs in a process of its own, one after the other, with the settings of bench_vs_torch.py's
``step`` part (its runners: batch 64, SGD with Nesterov momentum, the optimized minigru models, torch on
--threads threads). Per model and framework it prints the step's median time over --steps steps, then the
milliseconds per step, forward and backward together, of

* convolutions: minigru's Conv2d and PatchWhitening layers; torch's ``aten::conv2d`` calls and their
  ``ConvolutionBackward0`` nodes (the twin of cnn-gru-fast whitens with ``conv2d`` too);
* max-pooling: MaxPool2d (with the ReLU fused into it, ``nn.fuse_relu_maxpool``); ``aten::max_pool2d`` and
  ``MaxPool2DWithIndicesBackward0``;
* batch norm: BatchNorm2d; ``aten::batch_norm`` and ``NativeBatchNormBackward0``;
* everything else: the step's median minus the above (GRU, Linear, ReLU, loss, optimizer, and with replicas
  the split of the batch and the sum of the replicas' gradients).

minigru's layers are timed by wrapping each leaf module's forward and backward (the replica that runs in the
calling thread, while the other runs beside it); torch's by its profiler (``torch.profiler``, CPU time of the
calling thread, which waits for its worker threads inside each operator). Both ways add a little time per call,
which is why the step itself is timed without them. docs/performance.md quotes the results.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _frameworks  # noqa: E402
from profile_breakdown import median_ms  # noqa: E402  (one timing rule for the benchmark scripts)

KINDS = ("convolutions", "max-pooling", "batch norm")
MINIGRU_KINDS = {"Conv2d": "convolutions", "PatchWhitening": "convolutions", "MaxPool2d": "max-pooling",
                 "BatchNorm2d": "batch norm"}
"""minigru leaf module class -> kind; other leaves count as "everything else"."""
TORCH_EVENTS = {"aten::conv2d": "convolutions",
                "autograd::engine::evaluate_function: ConvolutionBackward0": "convolutions",
                "aten::max_pool2d": "max-pooling",
                "autograd::engine::evaluate_function: MaxPool2DWithIndicesBackward0": "max-pooling",
                "aten::batch_norm": "batch norm",
                "autograd::engine::evaluate_function: NativeBatchNormBackward0": "batch norm"}
"""torch profiler event -> kind (each event's total time includes the operators it calls)."""


def minigru_kinds(model, step, steps) -> dict:
    """ms per step of each kind of layer: the leaves of ``model`` timed by wrapping their forward and backward."""
    from recipe_step_times import layer_times  # noqa: PLC0415
    totals = dict.fromkeys(KINDS, 0.0)
    for name, forward_ms, backward_ms in layer_times(model, step, steps):
        kind = MINIGRU_KINDS.get(name.rsplit("(", 1)[1].rstrip(")"))
        if kind:
            totals[kind] += forward_ms + backward_ms
    return totals


def torch_kinds(torch, step, steps) -> dict:
    """ms per step of each kind of layer, from the profiler's events of the calling thread."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals = dict.fromkeys(KINDS, 0.0)
    for event in prof.key_averages():
        kind = TORCH_EVENTS.get(event.key)
        if kind:
            totals[kind] += event.cpu_time_total / 1e3 / steps      # microseconds over all steps -> ms per step
    return totals


def worker(args):
    """Profile every model of --models with one framework in this process; one JSON line per model."""
    runner = _frameworks.make_runner(args.worker, threads=args.threads, tune_memory=args.worker == "minigru",
                                     replicas=args.replicas)
    for model_key in args.models:
        p = {"model": model_key, "B": 64, "optimizer": "sgd"}
        runner.setup(model_key, "step", p)
        step = runner.cases[model_key][0]
        for _ in range(args.warmup):           # work arrays, BLAS threads, and the replicas (made at the first step)
            step()
        row = {"model": model_key, "framework": args.worker, "step_ms": median_ms(step, repeats=args.steps)}
        if args.worker == "minigru":
            row.update(minigru_kinds(runner.models[model_key], step, args.steps))
        else:
            row.update(torch_kinds(runner.torch, step, args.steps))
        print(json.dumps(row), flush=True)
        runner.drop(model_key)


def table(rows, replicas, threads) -> str:
    minigru_name = f"minigru, {replicas} replicas" if replicas > 1 else "minigru"
    lines = [f"| model | kind of layer | {minigru_name} ms | torch ms ({threads} threads) | ratio |",
             "|---|---|---:|---:|---:|"]
    for model_key, name in _frameworks.STEP_MODELS.items():
        got = {r["framework"]: r for r in rows if r["model"] == model_key}
        if len(got) < 2:
            continue
        for framework in got.values():
            framework["everything else"] = framework["step_ms"] - sum(framework[k] for k in KINDS)
        for kind in (*KINDS, "everything else", "step_ms"):
            ours, theirs = got["minigru"][kind], got["torch"][kind]
            if ours == theirs == 0.0:
                continue                        # e.g. no batch norm in this model
            ratio = f"{ours / theirs:.2f}" if theirs > 0 else "-"
            label = "**the whole step** (median)" if kind == "step_ms" else kind
            lines.append(f"| {name} | {label} | {ours:.2f} | {theirs:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(_frameworks.STEP_MODELS),
                        choices=list(_frameworks.STEP_MODELS))
    parser.add_argument("--replicas", type=int, default=2, help="minigru's replicas (nn.DataParallel)")
    parser.add_argument("--threads", type=int, default=None, help="threads of each framework (default: the CPUs)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps, for the median and for the profile")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", choices=("minigru", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.steps < 1:
        parser.error("--replicas and --steps must be at least 1")
    from minigru.perf import blas_summary, cpu_count  # noqa: PLC0415
    if args.threads is None:
        args.threads = cpu_count()
    if args.worker:
        return worker(args)
    print(f"CPUs: {args.threads}; NumPy's BLAS: {blas_summary() or 'unknown (threadpoolctl not installed)'}",
          flush=True)
    rows = []
    for framework in ("minigru", "torch"):
        command = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--models", *args.models,
                   "--replicas", str(args.replicas), "--threads", str(args.threads), "--steps", str(args.steps),
                   "--warmup", str(args.warmup)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(table(rows, args.replicas, args.threads))


if __name__ == "__main__":
    main()
