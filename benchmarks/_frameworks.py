"""The work that bench_vs_torch.py times, written once for minigru and once for PyTorch.

A *runner* builds the state of one benchmark case (``setup``), runs its
timed iteration (``run``) and hands back the numbers to verify
(``outputs``). The same weights and data are built in both frameworks from
one seed: minigru creates them (its initialisation is deterministic from the
seed) and the torch runner copies them with :mod:`minigru.interop`, so the
benchmark times the same computation on the same numbers.

Cases (``kind`` and its parameters):

* ``gemm``  n: float32 (n, n) @ (n, n)
* ``gru``   B, T, I, H, L: GRU forward + backward (dout on every output)
* ``conv``  N, C, K, S: Conv2d(C, K, 3, padding=1) on (N, C, S, S), forward + backward (with dx)
* ``pool``  N, C, S, relu: MaxPool2d(2) (with relu: ReLU then MaxPool2d) forward + backward
* ``step``  model (a key of STEP_MODELS), B, optimizer ("sgd" | "adam"): one training step, forward +
  cross-entropy + backward + optimizer update, batch norm in training mode

This module imports neither framework at the top: a worker process imports only the one it runs.
"""
from __future__ import annotations

import time

import numpy as np

SEED = 0
CLASSES = 10
STEP_MODELS = {"seed": "SeedCNN", "cnngru": "CNNGRU", "cnn-gru-fast": "cnn-gru-fast"}
"""The models of the ``step`` case: key -> name in the tables (cnn-gru-fast is issue 14's headline model)."""
OPTIMIZERS = {"sgd": "SGD-nesterov", "adam": "Adam"}
"""The optimizers of the ``step`` case: key -> name in the tables."""


def case_data(kind, p):
    """Inputs and upstream gradients of a case, as float32 NumPy arrays, the same in every process."""
    rng = np.random.default_rng(SEED + 1)
    f32 = np.float32
    if kind == "gemm":
        return {"a": rng.standard_normal((p["n"], p["n"])).astype(f32),
                "b": rng.standard_normal((p["n"], p["n"])).astype(f32)}
    if kind == "gru":
        d = 1
        return {"x": rng.standard_normal((p["T"], p["B"], p["I"])).astype(f32),
                "dout": rng.standard_normal((p["T"], p["B"], d * p["H"])).astype(f32)}
    if kind == "conv":
        return {"x": rng.standard_normal((p["N"], p["C"], p["S"], p["S"])).astype(f32),
                "dout": rng.standard_normal((p["N"], p["K"], p["S"], p["S"])).astype(f32)}
    if kind == "pool":
        return {"x": rng.standard_normal((p["N"], p["C"], p["S"], p["S"])).astype(f32),
                "dout": rng.standard_normal((p["N"], p["C"], p["S"] // 2, p["S"] // 2)).astype(f32)}
    if kind == "step":
        return {"x": rng.standard_normal((p["B"], 3, 32, 32)).astype(f32),
                "y": rng.integers(0, CLASSES, p["B"]).astype(np.int64)}
    raise ValueError(f"unknown benchmark kind {kind!r}")


def minigru_model(kind, p, optimize=True):
    """The minigru module of a case, initialised from SEED (float32, NumPy).

    ``optimize`` applies minigru's two model-level speed options to the CNNs: the first
    convolution skips its input gradient (``Conv2d.input_grad = False``: the input is data) and
    ReLUs next to max-pools are fused into them (``nn.fuse_relu_maxpool``). Both leave every
    output and parameter gradient unchanged.
    """
    from minigru import nn  # noqa: PLC0415
    if kind == "gru":
        return nn.GRU(p["I"], p["H"], num_layers=p["L"], rng=SEED)
    if kind == "conv":
        return nn.Conv2d(p["C"], p["K"], 3, padding=1, rng=SEED)
    if kind == "pool":
        if not p.get("relu"):
            return nn.MaxPool2d(2)
        model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
        if optimize:
            nn.fuse_relu_maxpool(model)
        return model
    if kind == "step":
        model = _step_model(p, optimize)
        if optimize:
            first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
            first_conv.input_grad = False
            nn.fuse_relu_maxpool(model)
        return model
    raise ValueError(f"no model for kind {kind!r}")


def _step_model(p, optimize):
    """The minigru model ``p["model"]`` of a step case (a key of STEP_MODELS), initialised from SEED."""
    from minigru import models  # noqa: PLC0415
    if p["model"] == "seed":
        return models.SeedCNN(rng=SEED)
    if p["model"] == "cnngru":
        return models.CNNGRU(rng=SEED)
    if p["model"] == "cnn-gru-fast":
        # The registered model (input_grad=False); --plain-models asks for the input gradient as the others do.
        model = models.build_model("cnn-gru-fast", rng=SEED, input_grad=not optimize)
        # The frozen whitening is fitted to the case's images, the same in every process, before the torch
        # twin copies its filters: both frameworks then whiten with identical filters.
        return model.initialize_from_data(case_data("step", p)["x"])
    raise ValueError(f"unknown step model {p['model']!r}; choose from {sorted(STEP_MODELS)}")


def make_optimizer(optim, name, params, ndim):
    """The step's optimizer from ``optim`` (``minigru.optim`` or ``torch.optim``: the same signatures).

    ``"sgd"``: the recipes' SGD (minigru train): Nesterov momentum 0.9, weight decay 5e-4 on weight
    matrices and kernels only (``ndim(p) > 1``), not on biases or batch norm. ``"adam"``: Adam, lr 1e-3.
    """
    params = list(params)
    if name == "adam":
        return optim.Adam(params, lr=1e-3)
    if name == "sgd":
        groups = [{"params": [q for q in params if ndim(q) > 1], "weight_decay": 5e-4},
                  {"params": [q for q in params if ndim(q) <= 1], "weight_decay": 0.0}]
        return optim.SGD([g for g in groups if g["params"]], lr=0.05, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")


def checks_update(p):
    """Whether the step's check compares one update of the parameters too (the two optimizers' settings).

    Only for SGD: Adam's first update is lr * g / (|g| + eps), about lr * sign(g) for every nonzero gradient,
    so float32 round-off in gradients near zero changes it by up to lr in either framework.
    """
    return p["optimizer"] == "sgd"


def torch_twin(torch, kind, p, model):
    """A torch module computing the same function as the minigru ``model``, with its weights."""
    from minigru import interop  # noqa: PLC0415
    if kind in ("gru", "conv", "pool"):
        return interop.export_to_torch(model)
    if p["model"] == "seed":
        from collections import OrderedDict  # noqa: PLC0415
        return torch.nn.Sequential(OrderedDict(features=interop.export_to_torch(model.features),
                                               classifier=interop.export_to_torch(model.classifier)))

    if model.readout != "final" or "dropout" in model._modules:
        raise ValueError("the torch twin reads the GRU's final states without dropout, as the step models do")

    class TorchConvGRU(torch.nn.Module):
        """The recipe of minigru.interop's docstring: (frozen whitening -> ReLU ->) conv features -> columns ->
        GRU -> final states -> Linear."""

        def __init__(self):
            super().__init__()
            whiten = getattr(model, "whiten", None)
            # a buffer, not a parameter: the filters are fixed, and the gradient names match minigru's
            self.register_buffer("whiten", None if whiten is None else torch.from_numpy(np.array(whiten.weight)))
            self.geometry = {} if whiten is None else dict(stride=whiten.stride, padding=whiten.padding)
            self.features = interop.export_to_torch(model.features)
            self.gru = interop.export_to_torch(model.gru)
            self.fc = interop.export_to_torch(model.fc)

        def forward(self, x):
            if self.whiten is not None:
                x = torch.relu(torch.nn.functional.conv2d(x, self.whiten, **self.geometry))
            f = self.features(x)
            seq = f.permute(3, 0, 1, 2).reshape(f.shape[3], f.shape[0], -1)
            _, h_n = self.gru(seq)
            final = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.gru.bidirectional else h_n[-1]
            return self.fc(final)

    return TorchConvGRU()


# ------------------------------------------------------------------------------ runners
class _Runner:
    """What both frameworks' runners share: ``cases[key] = (iteration, outputs)`` set up by ``setup``, and
    ``models[key]``, the module that the case runs (for profiles: benchmarks/step_profile.py)."""

    def outputs(self, key):
        return self.cases[key][1]()

    def run(self, key, iters):
        """Seconds of each of ``iters`` iterations (GPU work waited for before the clock stops)."""
        iteration = self.cases[key][0]
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            iteration()
            self._sync()
            times.append(time.perf_counter() - start)
        return times

    def drop(self, key):
        self.cases.pop(key, None)
        self.models.pop(key, None)


# ------------------------------------------------------------------------------ minigru
class MinigruRunner(_Runner):
    """Runs the cases with minigru on NumPy (or CuPy with ``backend="cupy"``)."""

    framework = "minigru"

    def __init__(self, backend="numpy", tune_memory=False, optimize=True, replicas=1, threads=None):
        import minigru  # noqa: PLC0415
        import minigru.perf  # noqa: PLC0415
        self.backend = backend
        self.replicas = replicas
        if replicas > 1 and backend == "numpy":
            # The cores go to the replicas: each one's BLAS gets its share of them (threads // replicas, at least 1).
            import threadpoolctl  # noqa: PLC0415
            cores = threads or minigru.perf.cpu_count()
            self.blas_limit = threadpoolctl.threadpool_limits(max(1, cores // replicas), user_api="blas")
        self.tuned = {}
        if tune_memory and backend == "numpy":
            self.tuned = minigru.perf.tune_host_memory()
        if backend == "cupy":
            minigru.set_backend("cupy")      # raises a clear BackendUnavailableError without a GPU
        self.xp = minigru.backend.get_xp(backend)
        self.optimize = optimize
        self.cases, self.models = {}, {}

    def _sync(self):
        if self.backend == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def setup(self, key, kind, p):
        from minigru import backend, nn, optim  # noqa: PLC0415
        data = {k: backend.to_backend(v, self.backend) for k, v in case_data(kind, p).items()}
        if kind == "gemm":
            a, b = data["a"], data["b"]
            c = self.xp.empty_like(a)

            def product():
                return self.xp.matmul(a, b, out=c)

            self.cases[key] = (product, lambda: {"c": backend.to_numpy(product())})
            return
        model = minigru_model(kind, p, self.optimize).to(self.backend)
        self.models[key] = model
        if kind in ("gru", "conv", "pool"):
            x, dout = data["x"], data["dout"]

            def iteration():
                model(x)
                model.backward(dout)

            def outputs():
                model.zero_grad()
                out = model(x)
                if kind == "gru":
                    out, h_n = out
                    dx, _ = model.backward(dout)
                else:
                    dx = model.backward(dout)
                got = {"out": out, "dx": dx}
                got.update({f"grad.{n}": prm.grad for n, prm in model.named_parameters()})
                return {k: backend.to_numpy(v) for k, v in got.items()}

            self.cases[key] = (iteration, outputs)
            return
        x, y = data["x"], data["y"]
        loss_fn = nn.CrossEntropyLoss()
        opt = make_optimizer(optim, p["optimizer"], model.parameters(), lambda q: q.data.ndim)
        # With replicas the timed step splits the batch (nn.DataParallel); the outputs verified against torch are
        # the model's on the whole batch, as batch norm over each replica's share is not torch's computation.
        net = nn.DataParallel(model, self.replicas) if self.replicas > 1 else model

        def train_step():
            opt.zero_grad()
            loss_fn(net(x), y)
            net.backward(loss_fn.backward())
            opt.step()

        def step_outputs():
            opt.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            model.backward(loss_fn.backward())
            got = {"logits": logits, "loss": loss}
            got.update({f"grad.{n}": prm.grad for n, prm in model.named_parameters()})
            result = {k: backend.to_numpy(v).copy() for k, v in got.items()}
            if checks_update(p):
                before = {n: backend.to_numpy(prm.data).copy() for n, prm in model.named_parameters()}
                opt.step()
                result.update({f"update.{n}": backend.to_numpy(prm.data) - before[n]
                               for n, prm in model.named_parameters()})
            opt.zero_grad()
            return result

        self.cases[key] = (train_step, step_outputs)

    def drop(self, key):
        super().drop(key)
        from minigru.functional import clear_work_pool  # noqa: PLC0415
        clear_work_pool()


# -------------------------------------------------------------------------------- torch
class TorchRunner(_Runner):
    """Runs the cases with PyTorch on the CPU (``torch.set_num_threads(threads)``) or on CUDA."""

    framework = "torch"

    def __init__(self, backend="numpy", threads=None, tune_memory=False):
        self.tuned = {}
        if tune_memory and backend == "numpy":   # only on request: torch is timed as users run it
            import minigru.perf  # noqa: PLC0415
            self.tuned = minigru.perf.tune_host_memory()
        import torch  # noqa: PLC0415
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        if backend == "cupy":
            if not torch.cuda.is_available():
                raise RuntimeError("--backend cupy compares with torch on CUDA, but torch.cuda.is_available() is "
                                   "False (a CPU-only torch build, or no NVIDIA GPU/driver)")
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.cases, self.models = {}, {}

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _tensor(self, a, grad=False):
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        return t.requires_grad_(grad)

    def setup(self, key, kind, p):
        torch = self.torch
        data = case_data(kind, p)
        if kind == "gemm":
            a, b = self._tensor(data["a"]), self._tensor(data["b"])
            c = torch.empty_like(a)

            def product():
                return torch.mm(a, b, out=c)

            self.cases[key] = (product, lambda: {"c": product().cpu().numpy()})
            return
        model = torch_twin(torch, kind, p, minigru_model(kind, p, optimize=False)).to(self.device)
        self.models[key] = model
        if kind in ("gru", "conv", "pool"):
            x, dout = self._tensor(data["x"], grad=True), self._tensor(data["dout"])

            def iteration():
                out = model(x)
                (out[0] if kind == "gru" else out).backward(dout)

            def outputs():
                model.zero_grad(set_to_none=True)
                x.grad = None
                out = model(x)
                out = out[0] if kind == "gru" else out
                out.backward(dout)
                got = {"out": out.detach(), "dx": x.grad}
                got.update({f"grad.{n}": prm.grad for n, prm in model.named_parameters()})
                return {k: v.detach().cpu().numpy() for k, v in got.items()}

            self.cases[key] = (iteration, outputs)
            return
        x, y = self._tensor(data["x"]), self._tensor(data["y"])
        loss_fn = torch.nn.CrossEntropyLoss()
        opt = make_optimizer(torch.optim, p["optimizer"], model.parameters(), lambda q: q.dim())

        def train_step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        def step_outputs():
            opt.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            got = {"logits": logits.detach(), "loss": loss.detach()}
            got.update({f"grad.{n}": prm.grad for n, prm in model.named_parameters()})
            result = {k: v.detach().cpu().numpy().copy() for k, v in got.items()}
            if checks_update(p):
                before = {n: prm.detach().cpu().numpy().copy() for n, prm in model.named_parameters()}
                opt.step()
                result.update({f"update.{n}": prm.detach().cpu().numpy() - before[n]
                               for n, prm in model.named_parameters()})
            opt.zero_grad()
            return result

        self.cases[key] = (train_step, step_outputs)


def make_runner(framework, backend="numpy", threads=None, tune_memory=False, optimize=True, replicas=1):
    """A runner of ``framework``; ``tune_memory`` applies minigru.perf.tune_host_memory() in this process;
    ``replicas`` > 1 splits minigru's train steps over that many model replicas (nn.DataParallel)."""
    if framework == "minigru":
        return MinigruRunner(backend, tune_memory=tune_memory, optimize=optimize, replicas=replicas, threads=threads)
    if framework == "torch":
        return TorchRunner(backend, threads=threads, tune_memory=tune_memory)
    raise ValueError(f"unknown framework {framework!r}")
