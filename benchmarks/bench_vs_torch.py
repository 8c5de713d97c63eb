"""minigru against PyTorch on the same work: medians, ratios, targets, memory and scaling.

    python benchmarks/bench_vs_torch.py                     # everything, plain-text tables
    python benchmarks/bench_vs_torch.py --parts gru,step    # some parts only
    python benchmarks/bench_vs_torch.py --markdown --json results.json
    python benchmarks/bench_vs_torch.py --backend cupy      # CuPy against torch CUDA (needs a GPU)
    python benchmarks/bench_vs_torch.py --parts step --optimizer adam   # train steps with Adam, not SGD

How it measures (see docs/performance.md):

* Each framework runs in its own worker process (``_worker.py``), as users run
  them; the two are driven in turns — a round of minigru, a round of torch, the
  order alternating — so that load from other programs hits both alike. The
  table reports the median time of all iterations and the ratio minigru/torch.
  ``--same-process`` runs both in this process instead (then torch's OpenMP
  threads and OpenBLAS's threads compete; ``--omp-wait-policy PASSIVE`` stops
  OpenMP's spinning).
* torch uses ``torch.set_num_threads(--threads)`` (default: the CPUs of this
  process); NumPy's OpenBLAS uses its default (the same number).
* Before timing, every case is checked: outputs and all gradients of minigru
  and torch with the same weights agree within a loose float32 tolerance.
* The minigru worker calls ``minigru.perf.tune_host_memory()`` and builds the
  CNNs with their speed options (first Conv2d ``input_grad=False``, fused
  ReLU/MaxPool2d); ``--no-tune-memory`` / ``--plain-models`` turn them off.
* The train steps ("step", "memory") are SeedCNN, CNNGRU and issue 14's headline
  model cnn-gru-fast (frozen patch whitening, conv-BN blocks, bidirectional GRU), batch
  norm in training mode, with ``--optimizer``: the recipes' SGD (Nesterov momentum 0.9,
  weight decay 5e-4 on weights; the default) or Adam, the same in both frameworks.
* ``--replicas N`` splits minigru's train steps ("step", "memory") over N model replicas, one
  thread each (``nn.DataParallel``), with OpenBLAS on ``--threads // N`` threads: the way
  ``minigru train --replicas N`` uses the cores. Batch norm then normalises each replica's share,
  which torch's step does not do, so the outputs verified against torch are those of the model on
  the whole batch, computed before the timing.
* Peak memory: a fresh process per framework runs a few training steps at batch
  128 and reports its peak resident memory (ru_maxrss) minus the memory it had
  before the first step (the training working set), and the absolute peak.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _frameworks  # noqa: E402

PARTS = ("gemm", "gru", "conv", "pool", "step", "memory", "scaling")

GRU_SHAPES = [dict(B=64, T=32, I=96, H=128, L=1), dict(B=64, T=8, I=1024, H=256, L=2),
              dict(B=128, T=64, I=256, H=512, L=1)]
CONV_SHAPES = [dict(N=64, C=3, K=32, S=32), dict(N=64, C=32, K=64, S=16), dict(N=64, C=64, K=128, S=8)]
POOL_SHAPES = [dict(N=64, C=32, S=32, relu=False), dict(N=64, C=64, S=16, relu=False),
               dict(N=64, C=32, S=32, relu=True)]
STEP_MODELS = list(_frameworks.STEP_MODELS)
TARGETS = {"gru": 0.8, "step": 1.0, "memory": 1.5}     # issue 14: train faster than torch, GRU 0.8x, memory 1.5x
SCALING = {"gru_batch": [16, 32, 64, 128, 256], "gru_steps": [8, 16, 32, 64, 128], "step_batch": [16, 32, 64, 128]}


# ------------------------------------------------------------------------- the two sides
class ProcessSide:
    """A framework in a worker process, spoken to with JSON lines."""

    def __init__(self, framework, args, env=None):
        command = [sys.executable, os.path.join(HERE, "_worker.py"), "serve", "--framework", framework,
                   "--backend", args.backend, "--threads", str(args.threads)]
        if (framework == "minigru" and not args.no_tune_memory) or (framework == "torch" and args.tune_torch_memory):
            command.append("--tune-memory")
        if args.plain_models:
            command.append("--plain-models")
        if framework == "minigru":
            command += ["--replicas", str(args.replicas)]
        self.framework = framework
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, **(env or {})})
        ready = json.loads(self.proc.stdout.readline() or '{"ok": false, "error": "the worker died at start"}')
        if not ready.get("ok"):
            raise SystemExit(f"bench_vs_torch: cannot start the {framework} worker: {ready.get('error')}")

    def _ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        reply = json.loads(self.proc.stdout.readline() or '{"ok": false, "error": "the worker died"}')
        if not reply.get("ok"):
            raise RuntimeError(f"{self.framework} worker: {reply.get('error')}\n{reply.get('trace', '')}")
        return reply

    def setup(self, key, kind, params):
        self._ask(op="setup", key=key, kind=kind, params=params)

    def run(self, key, iters):
        return self._ask(op="run", key=key, iters=iters)["times"]

    def outputs(self, key):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "outputs.npz")
            self._ask(op="outputs", key=key, path=path)
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}

    def drop(self, key):
        self._ask(op="drop", key=key)

    def info(self):
        return self._ask(op="info")["info"]

    def close(self):
        try:
            self._ask(op="quit")
        finally:
            self.proc.wait(timeout=30)


class LocalSide:
    """A framework in this process (``--same-process``)."""

    def __init__(self, framework, args):
        tune = (framework == "minigru" and not args.no_tune_memory) or (framework == "torch" and args.tune_torch_memory)
        self.framework = framework
        self.runner = _frameworks.make_runner(framework, args.backend, threads=args.threads, tune_memory=tune,
                                              optimize=not args.plain_models, replicas=args.replicas)

    def setup(self, key, kind, params):
        self.runner.setup(key, kind, params)

    def run(self, key, iters):
        return self.runner.run(key, iters)

    def outputs(self, key):
        return self.runner.outputs(key)

    def drop(self, key):
        self.runner.drop(key)

    def info(self):
        import _worker  # noqa: PLC0415
        return _worker.framework_info(self.runner)

    def close(self):
        pass


# ---------------------------------------------------------------------------- measuring
def compare_outputs(mine, theirs):
    """Largest error of minigru's arrays relative to the magnitude of torch's, over every common name."""
    missing = sorted(set(theirs) ^ set(mine))
    if missing:
        raise RuntimeError(f"the two frameworks returned different arrays: {missing}")
    worst, where = 0.0, ""
    for name, ref in theirs.items():
        got = mine[name].reshape(ref.shape)
        scale = max(float(np.max(np.abs(ref))), 1e-12)
        err = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
        if err > worst:
            worst, where = err, name
    return worst, where


def measure(sides, key, kind, params, args):
    """Set the case up on both sides, verify it, time it in alternating rounds; returns a result dict."""
    for side in sides:
        side.setup(key, kind, params)
    result = {"key": key, "kind": kind, "params": params}
    try:
        if not args.no_verify:
            mine = sides[0].outputs(key)
            upcast = sorted(n for n, a in mine.items() if a.dtype.kind == "f" and a.dtype != np.float32)
            if upcast:   # the dtype audit: float32 in, float32 everywhere out
                raise RuntimeError(f"{key}: minigru returned non-float32 arrays from float32 work: {upcast}")
            err, where = compare_outputs(mine, sides[1].outputs(key))
            result["max_rel_err"], result["worst_array"] = err, where
            if err > args.tolerance:
                raise RuntimeError(f"{key}: minigru and torch disagree: max relative error {err:.2e} in {where} "
                                   f"(tolerance {args.tolerance:.0e}); not timing wrong code")
        iters = {}
        for side in sides:
            side.run(key, 2)                                  # warm up: caches, pools, lazy init
            one = float(np.median(side.run(key, 3)))
            iters[side.framework] = int(min(args.max_iters, max(1, round(args.round_seconds / max(one, 1e-6)))))
        times = {side.framework: [] for side in sides}
        for r in range(args.repeats):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                time.sleep(args.pause)                        # let the other side's threads go idle
                times[side.framework] += side.run(key, iters[side.framework])
        for fw, ts in times.items():
            result[fw + "_ms"] = 1e3 * float(np.median(ts))
            result[fw + "_iqr_ms"] = 1e3 * float(np.subtract(*np.percentile(ts, [75, 25])))
            result[fw + "_n"] = len(ts)
        result["ratio"] = result["minigru_ms"] / result["torch_ms"]
    finally:
        for side in sides:
            side.drop(key)
    return result


def _memory_once(args, model, framework):
    command = [sys.executable, os.path.join(HERE, "_worker.py"), "memory", "--framework", framework,
               "--backend", args.backend, "--threads", str(args.threads), "--model", model,
               "--batch", str(args.memory_batch), "--steps", str(args.memory_steps), "--optimizer", args.optimizer]
    if (framework == "minigru" and not args.no_tune_memory) or (framework == "torch" and args.tune_torch_memory):
        command.append("--tune-memory")
    if args.plain_models:
        command.append("--plain-models")
    if framework == "minigru":
        command += ["--tracemalloc", "--replicas", str(args.replicas)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {framework} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory(args, model):
    """Peak memory of a short training run at batch --memory-batch: a fresh process per framework and
    repeat (alternating), median of --memory-repeats runs (torch's figure varies by tens of MB)."""
    runs = {"minigru": [], "torch": []}
    for r in range(args.memory_repeats):
        for framework in (("minigru", "torch") if r % 2 == 0 else ("torch", "minigru")):
            runs[framework].append(_memory_once(args, model, framework))
    out = {}
    for framework, results in runs.items():
        median = dict(results[0])
        for key in ("baseline_mb", "peak_mb", "training_mb", "tracemalloc_peak_mb", "seconds"):
            if key in median:
                median[key] = float(np.median([r[key] for r in results]))
        median["training_mb_runs"] = [round(r["training_mb"], 1) for r in results]
        out[framework] = median
    key = f"memory {_frameworks.STEP_MODELS[model]} B{args.memory_batch} ({_frameworks.OPTIMIZERS[args.optimizer]})"
    return {"key": key, "kind": "memory", "model": model, **out,
            "ratio": out["minigru"]["training_mb"] / max(out["torch"]["training_mb"], 1e-9),
            "ratio_total": out["minigru"]["peak_mb"] / max(out["torch"]["peak_mb"], 1e-9)}


# ------------------------------------------------------------------------------- report
def machine_info(sides, args):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": args.threads, "backend": args.backend,
            "mode": "same process" if args.same_process else "one process per framework, interleaved rounds",
            "omp_wait_policy": args.omp_wait_policy or "(unset)", "repeats": args.repeats,
            "round_seconds": args.round_seconds,
            # OpenBLAS's kernels (the worker's BLAS row) follow this when set: docs/performance.md
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE") or "(unset)"}
    for side in sides:
        info[side.framework] = side.info()
    return info


def load_text():
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def case_label(result):
    p, kind = result["params"], result["kind"]
    if kind == "gemm":
        return f"GEMM float32 {p['n']}x{p['n']}"
    if kind == "gru":
        return f"GRU fwd+bwd B{p['B']} T{p['T']} I{p['I']} H{p['H']}" + (f" L{p['L']}" if p["L"] > 1 else "")
    if kind == "conv":
        return f"Conv2d 3x3 p1 fwd+bwd N{p['N']} {p['C']}->{p['K']} {p['S']}x{p['S']}"
    if kind == "pool":
        what = "ReLU+MaxPool2d" if p.get("relu") else "MaxPool2d"
        return f"{what} 2x2 fwd+bwd N{p['N']} C{p['C']} {p['S']}x{p['S']}"
    return (f"train step {_frameworks.STEP_MODELS[p['model']]} B{p['B']} "
            f"(fwd+bwd+{_frameworks.OPTIMIZERS[p['optimizer']]})")


def verdict(kind, ratio):
    target = TARGETS.get(kind)
    if target is None:
        return "", ""
    return f"<= {target}", ("met" if ratio <= target else "NOT met")


def format_tables(results, info, markdown):
    lines = []

    def table(header, rows):
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
            lines.extend("  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows)
        lines.append("")

    timed = [r for r in results if r["kind"] not in ("memory", "scaling")]
    if timed:
        rows = []
        for r in timed:
            target, met = verdict(r["kind"], r["ratio"])
            extra = ""
            if r["kind"] == "gemm":
                flops = 2 * r["params"]["n"] ** 3
                extra = f"{flops / r['minigru_ms'] / 1e6:.0f} / {flops / r['torch_ms'] / 1e6:.0f} GFLOP/s"
            err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else "-"
            rows.append([case_label(r), f"{r['minigru_ms']:.2f}", f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}",
                         target, met, err, extra])
        table(["case", "minigru ms", "torch ms", "ratio", "target", "", "max rel err", "note"], rows)
    memory = [r for r in results if r["kind"] == "memory"]
    if memory:
        rows = []
        for r in memory:
            target, met = verdict("memory", r["ratio"])
            m, t = r["minigru"], r["torch"]
            rows.append([r["key"], f"{m['training_mb']:.0f}", f"{t['training_mb']:.0f}", f"{r['ratio']:.2f}", target,
                         met, f"{m['peak_mb']:.0f} / {t['peak_mb']:.0f}",
                         f"{m.get('tracemalloc_peak_mb', float('nan')):.0f}"])
        table(["peak memory", "minigru MB", "torch MB", "ratio", "target", "", "total peak RSS MB (m / t)",
               "minigru arrays MB (tracemalloc)"], rows)
    scaling = [r for r in results if r["kind"] == "scaling"]
    for s in scaling:
        rows = [[str(v), f"{m:.2f}", f"{t:.2f}", f"{m / t:.2f}", f"{m / s['minigru_ms'][0]:.2f}",
                 f"{t / s['torch_ms'][0]:.2f}"]
                for v, m, t in zip(s["values"], s["minigru_ms"], s["torch_ms"])]
        lines.append(s["title"])
        lines.append("")
        table([s["axis"], "minigru ms", "torch ms", "ratio", "minigru growth", "torch growth"], rows)
    return "\n".join(lines)


def format_header(info, markdown):
    m, t = info.get("minigru", {}), info.get("torch", {})
    blas = m.get("blas") or [{}]
    blas_text = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                          f"{b.get('num_threads')} threads, {b.get('threading_layer')})" for b in blas)
    rows = [("date", info["date"]), ("machine", f"{info['cpu']}, {info['cpus']} CPUs, {info['platform']}"),
            ("python", info["python"]),
            ("minigru", f"{m.get('minigru')} on NumPy {m.get('numpy')} ({info['backend']}); tune_host_memory: "
                        f"{bool(m.get('tuned_memory'))}; optimized models: {m.get('optimized_models')}"),
            ("NumPy BLAS", f"{blas_text}; OPENBLAS_CORETYPE={info.get('openblas_coretype', '?')}"),
            ("torch", f"{t.get('torch')} ({t.get('device')}), set_num_threads({t.get('threads')}); "
                      + "; ".join(t.get("libraries", []))),
            ("method", f"{info['mode']}; OMP_WAIT_POLICY={info['omp_wait_policy']}; {info['repeats']} rounds of "
                       f"~{info['round_seconds']} s per framework; medians"),
            ("load", f"{info['load_before']} (start), {info.get('load_after', '?')} (end)")]
    if markdown:
        return "\n".join(f"- **{k}**: {v}" for k, v in rows) + "\n"
    return "\n".join(f"{k:>10}: {v}" for k, v in rows) + "\n"


# --------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="minigru vs PyTorch: side-by-side timings, memory and scaling")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy",
                        help="numpy: minigru on NumPy vs torch CPU; cupy: minigru on CuPy vs torch CUDA")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per framework (default 5)")
    parser.add_argument("--round-seconds", type=float, default=0.3, help="target length of one round (default 0.3)")
    parser.add_argument("--max-iters", type=int, default=200, help="most iterations in one round")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between rounds (default 0.05)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of ~0.1 s: a fast, noisier run")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: CPUs available)")
    parser.add_argument("--same-process", action="store_true", help="run both frameworks in this process")
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default=None,
                        help="OMP_WAIT_POLICY for torch (set before torch is imported)")
    parser.add_argument("--no-tune-memory", action="store_true", help="do not call minigru.perf.tune_host_memory()")
    parser.add_argument("--tune-torch-memory", action="store_true", help="apply tune_host_memory() to torch too")
    parser.add_argument("--plain-models", action="store_true",
                        help="CNNs without input_grad=False on the first conv and without fused ReLU/MaxPool2d")
    parser.add_argument("--optimizer", choices=list(_frameworks.OPTIMIZERS), default="sgd",
                        help="optimizer of the train steps: sgd (the recipes': Nesterov momentum 0.9, weight decay "
                             "5e-4; default) or adam (lr 1e-3)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="minigru's train steps split each batch over N model replicas, one thread each "
                             "(nn.DataParallel), its BLAS on --threads // N threads; the outputs checked against "
                             "torch are then those of one replica on the whole batch")
    parser.add_argument("--no-verify", action="store_true", help="skip the output/gradient comparison")
    parser.add_argument("--tolerance", type=float, default=2e-3, help="max relative error accepted (float32)")
    parser.add_argument("--memory-batch", type=int, default=128)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per framework (median)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/performance.md)")
    parser.add_argument("--json", metavar="PATH", help="also write every number to PATH as JSON")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if args.quick:
        args.repeats, args.round_seconds = 3, 0.1
    if args.replicas < 1:
        parser.error(f"--replicas must be >= 1, got {args.replicas}")
    if args.threads is None:
        sys.path.insert(0, os.path.dirname(HERE))
        from minigru.perf import cpu_count  # noqa: PLC0415
        args.threads = cpu_count()
    return args


def check_gpu(args):
    """--backend cupy needs CuPy with a CUDA device and a CUDA build of torch: stop with a clear message if not."""
    if args.backend != "cupy":
        return
    from minigru import backend  # noqa: PLC0415
    if not backend.cupy_available():
        raise SystemExit("bench_vs_torch: --backend cupy needs CuPy and a CUDA GPU, and none is usable here "
                         "(pip install 'minigru[cuda12]' on a machine with an NVIDIA GPU); run without --backend "
                         "for the CPU comparison")


def cases(args):
    """(part, key, kind, params) of every timed case that was asked for."""
    out = []
    if "gemm" in args.parts:
        out.append(("gemm", "gemm", "gemm", {"n": 2048}))
    if "gru" in args.parts:
        out += [("gru", f"gru{i}", "gru", p) for i, p in enumerate(GRU_SHAPES)]
    if "conv" in args.parts:
        out += [("conv", f"conv{i}", "conv", p) for i, p in enumerate(CONV_SHAPES)]
    if "pool" in args.parts:
        out += [("pool", f"pool{i}", "pool", p) for i, p in enumerate(POOL_SHAPES)]
    if "step" in args.parts:
        out += [("step", f"step_{m}", "step", {"model": m, "B": 64, "optimizer": args.optimizer})
                for m in STEP_MODELS]
    return out


def scaling_runs(sides, args, log):
    base = dict(GRU_SHAPES[0])
    plans = [("GRU fwd+bwd vs batch size (T32 I96 H128)", "batch B", "gru", "B", SCALING["gru_batch"], base),
             ("GRU fwd+bwd vs sequence length (B64 I96 H128)", "steps T", "gru", "T", SCALING["gru_steps"], base),
             ("SeedCNN train step vs batch size", "batch B", "step", "B", SCALING["step_batch"],
              {"model": "seed", "B": 64, "optimizer": args.optimizer})]
    results = []
    for title, axis, kind, name, values, params in plans:
        entry = {"kind": "scaling", "title": title, "axis": axis, "values": values, "minigru_ms": [], "torch_ms": []}
        for v in values:
            r = measure(sides, f"scale_{kind}_{name}{v}", kind, {**params, name: v}, args)
            entry["minigru_ms"].append(r["minigru_ms"])
            entry["torch_ms"].append(r["torch_ms"])
            log(f"  {title}: {name}={v}: {r['minigru_ms']:.2f} / {r['torch_ms']:.2f} ms")
        results.append(entry)
    return results


def main(argv=None):
    args = parse_args(argv)
    check_gpu(args)
    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy   # before any torch import, in this process too

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.same_process:
        sides = [LocalSide("minigru", args), LocalSide("torch", args)]
    else:
        sides = [ProcessSide("minigru", args), ProcessSide("torch", args)]
    results = []
    try:
        info = machine_info(sides, args)
        info["load_before"] = load_text()
        for part, key, kind, params in cases(args):
            r = measure(sides, key, kind, params, args)
            r["part"] = part
            results.append(r)
            log(f"{case_label(r)}: minigru {r['minigru_ms']:.2f} ms, torch {r['torch_ms']:.2f} ms, "
                f"ratio {r['ratio']:.2f} (err {r.get('max_rel_err', float('nan')):.1e})")
        if "scaling" in args.parts:
            results += scaling_runs(sides, args, log)
    finally:
        for side in sides:
            side.close()
    if "memory" in args.parts:
        for model in STEP_MODELS:
            r = run_memory(args, model)
            results.append(r)
            log(f"{r['key']}: minigru {r['minigru']['training_mb']:.0f} MB, torch {r['torch']['training_mb']:.0f} MB")
    info["load_after"] = load_text()
    print(format_header(info, args.markdown))
    print(format_tables(results, info, args.markdown))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
