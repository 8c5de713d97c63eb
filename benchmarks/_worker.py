"""A benchmark worker process: one framework per process, driven by bench_vs_torch.py.

``python benchmarks/_worker.py serve --framework minigru|torch [--backend numpy|cupy] [--threads N]``
reads one JSON request per line on stdin and answers one JSON line each:

    {"op": "setup", "key": ..., "kind": ..., "params": {...}}  -> {"ok": true}
    {"op": "run", "key": ..., "iters": n}                      -> {"ok": true, "times": [seconds, ...]}
    {"op": "outputs", "key": ..., "path": "file.npz"}          -> {"ok": true}   (arrays saved to path)
    {"op": "drop", "key": ...}                                 -> {"ok": true}
    {"op": "info"}                                             -> {"ok": true, "info": {...}}

Errors come back as {"ok": false, "error": "..."}. Anything else the libraries print goes
to stderr: the answers use a private copy of the original stdout.

``python benchmarks/_worker.py memory --framework F --model seed|cnngru|cnn-gru-fast --batch 128 --steps 3
[--optimizer sgd|adam]``
runs a short training run in this (fresh) process and prints its peak memory as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import _frameworks  # noqa: E402


def _current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def framework_info(runner):
    """Versions, threads and BLAS of the framework in this process."""
    info = {"framework": runner.framework, "pid": os.getpid()}
    if runner.framework == "minigru":
        import minigru  # noqa: PLC0415
        import minigru.perf  # noqa: PLC0415
        info.update(minigru=minigru.__version__, numpy=np.__version__, blas=minigru.perf.blas_info(),
                    tuned_memory=runner.tuned, backend=runner.backend, optimized_models=runner.optimize)
    else:
        torch = runner.torch
        config = torch.__config__.show()
        libs = [line.strip(" -") for line in config.splitlines()
                if "MKL-DNN" in line or "Math Kernel Library" in line or "OpenMP" in line]
        info.update(torch=torch.__version__, threads=torch.get_num_threads(), libraries=libs,
                    device=str(runner.device), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                    tuned_memory=runner.tuned)
        if runner.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _runner(args):
    """The runner of ``args.framework`` set up as the command line asks (serve and memory alike)."""
    return _frameworks.make_runner(args.framework, args.backend, threads=args.threads,
                                   tune_memory=args.tune_memory, optimize=not args.plain_models,
                                   replicas=args.replicas)


def serve(args):
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # stray prints (C or Python) go to stderr
    try:
        runner = _runner(args)
    except Exception as err:  # a missing GPU, torch or CuPy: say so and stop
        answers.write(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}) + "\n")
        return 2
    answers.write(json.dumps({"ok": True, "ready": args.framework}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            op = request["op"]
            reply = {"ok": True}
            if op == "setup":
                runner.setup(request["key"], request["kind"], request["params"])
            elif op == "run":
                reply["times"] = runner.run(request["key"], int(request["iters"]))
            elif op == "outputs":
                np.savez(request["path"], **runner.outputs(request["key"]))
            elif op == "drop":
                runner.drop(request["key"])
            elif op == "info":
                reply["info"] = framework_info(runner)
            elif op == "quit":
                answers.write(json.dumps(reply) + "\n")
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as err:
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
        answers.write(json.dumps(reply) + "\n")
    return 0


def memory(args):
    """Peak memory of ``steps`` training steps at batch ``batch`` in this fresh process, as JSON on stdout."""
    runner = _runner(args)
    params = {"model": args.model, "B": args.batch, "optimizer": args.optimizer}
    runner.setup("mem", "step", params)
    result = {"framework": args.framework, "model": args.model, "batch": args.batch, "steps": args.steps,
              "optimizer": args.optimizer}
    gpu = args.backend == "cupy"
    if gpu and args.framework == "minigru":
        pool = runner.xp.get_default_memory_pool()
        base = pool.total_bytes()
    elif gpu:
        runner.torch.cuda.reset_peak_memory_stats()
        base = runner.torch.cuda.memory_reserved()
    else:
        base = _current_rss_bytes()
    tracing = args.framework == "minigru" and not gpu and args.tracemalloc
    if tracing:   # NumPy reports its array allocations to tracemalloc: the exact bytes of live arrays
        import tracemalloc  # noqa: PLC0415
        tracemalloc.start()
    start = time.perf_counter()
    runner.run("mem", args.steps)
    result["seconds"] = time.perf_counter() - start
    if gpu and args.framework == "minigru":
        result.update(baseline_mb=base / 2**20, peak_mb=runner.xp.get_default_memory_pool().total_bytes() / 2**20,
                      measure="CuPy memory pool, bytes held")
    elif gpu:
        result.update(baseline_mb=base / 2**20, peak_mb=runner.torch.cuda.max_memory_reserved() / 2**20,
                      measure="torch.cuda.max_memory_reserved")
    else:
        result.update(baseline_mb=base / 2**20, peak_mb=_peak_rss_bytes() / 2**20, measure="ru_maxrss")
    result["training_mb"] = result["peak_mb"] - result["baseline_mb"]
    if tracing:
        result["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(result))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["serve", "memory"])
    parser.add_argument("--framework", choices=["minigru", "torch"], required=True)
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tune-memory", action="store_true", help="call minigru.perf.tune_host_memory() first")
    parser.add_argument("--plain-models", action="store_true")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--model", choices=list(_frameworks.STEP_MODELS), default="seed")
    parser.add_argument("--optimizer", choices=list(_frameworks.OPTIMIZERS), default="sgd")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    return serve(args) if args.mode == "serve" else memory(args)


if __name__ == "__main__":
    sys.exit(main())
