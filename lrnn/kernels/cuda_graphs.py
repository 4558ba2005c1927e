"""CUDA graphs for a core's forward and backward: the step loop replayed as two graphs instead of ~5 launches a step.

An untied core on GPU launches a matrix product and an LSTM-cell kernel per step and layer going forward, and three
kernels going back; at PTB sizes (B 20, H 200) each kernel takes microseconds, so the GPU mostly waits for Python and
the launches. `CUDAGraphs` captures one forward and one backward of the core per input signature (shapes, dtypes,
which inputs need gradients, offset, train/eval, the parameters' storage) and replays them. Semantics are eager
autograd's: outputs and gradients are fresh tensors (clones of the graph's static memory), so keeping an output across
steps, accumulating gradients or calling `torch.autograd.grad` all behave as without graphs.

When the graphs are not used (the eager forward runs instead): off CUDA; with autograd off or nothing requiring a
gradient (validation, generation); under autocast; inside another capture; while the previous replay's backward has
not run yet (its saved activations are the graph's static memory, which a second replay would overwrite) while
anything can still reach it; once `max_graphs` signatures are captured (a warning says so); and after a capture failed
(a warning says why).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

EagerForward = Callable[[Tensor, "tuple[Tensor, Tensor] | None", int], "tuple[Tensor, tuple[Tensor, Tensor]]"]


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4: no device argument, and this meant CUDA
        return torch.is_autocast_enabled()


def _parameter_aliases(module: nn.Module) -> dict[str, nn.Parameter]:
    """New leaf tensors sharing each parameter's memory, by parameter name (what a capture differentiates)."""
    return {n: nn.Parameter(p.detach(), p.requires_grad) for n, p in module.named_parameters()}


@contextlib.contextmanager
def _parameters_swapped(module: nn.Module, swaps: dict[str, nn.Parameter]) -> Iterator[None]:
    """Within the block, module's parameter `name` is swaps[name] (e.g. "weight_ih_l0.3")."""
    saved = []
    for name, alias in swaps.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        saved.append((owner, leaf, owner._parameters[leaf]))
        owner._parameters[leaf] = alias
    try:
        yield
    finally:
        for owner, leaf, p in saved:
            owner._parameters[leaf] = p


class _Graph:
    """One captured forward+backward: fn(*static_inputs) -> (out, h_n, c_n) with `params` read in place."""

    def __init__(self, fn: Callable[..., tuple[Tensor, ...]], inputs: Sequence[Tensor], params: Sequence[Tensor]):
        self.inputs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]  # static input memory
        self.n_inputs = len(inputs)
        surface = [*self.inputs, *params]
        self.needs = [i for i, t in enumerate(surface) if t.requires_grad]
        wrt = [surface[i] for i in self.needs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy initialisation (cuBLAS handles, workspaces) outside the capture
            for _ in range(3):
                outs = fn(*self.inputs)
                torch.autograd.grad(outs, wrt, [torch.ones_like(o) for o in outs], allow_unused=True)
        torch.cuda.current_stream().wait_stream(side)
        del outs
        pool = torch.cuda.graph_pool_handle()
        self.fwd, self.bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.fwd, pool=pool):
            self.outs = fn(*self.inputs)
        self.grad_outs = [torch.empty_like(o) for o in self.outs]
        with torch.cuda.graph(self.bwd, pool=pool):
            grads = torch.autograd.grad(self.outs, wrt, self.grad_outs, allow_unused=True)
        # the captured autograd graph is not needed after the capture (kept through outs' grad_fn, it held the
        # aliases' gradient accumulators on the side stream)
        self.outs = [o.detach() for o in self.outs]
        self.grads: list[Tensor | None] = [None] * len(surface)
        for i, g in zip(self.needs, grads, strict=True):
            self.grads[i] = g
        self.last: weakref.ref | None = None  # the autograd node of the latest replay
        self.backward_ran = True

    def busy(self) -> bool:
        """Whether the latest replay's backward is still to come (and anything can still reach its node)."""
        return not self.backward_ran and self.last is not None and self.last() is not None


class _Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graph: _Graph, *surface: Tensor) -> tuple[Tensor, ...]:  # noqa: D102
        for static, x in zip(graph.inputs, surface[: graph.n_inputs], strict=True):
            static.copy_(x)
        graph.fwd.replay()
        ctx.graph = graph
        graph.last, graph.backward_ran = weakref.ref(ctx), False  # the node lives while anything can reach it
        return tuple(o.clone() for o in graph.outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:  # noqa: D102
        graph = ctx.graph
        if graph.last is None or graph.last() is not ctx:
            raise RuntimeError(
                "backward through a CUDA-graph replay after a later replay of the same graph (its activations are "
                "gone): with retain_graph=True, run the backward passes before the next forward, or cuda_graphs=False"
            )
        for static, g in zip(graph.grad_outs, grads, strict=True):
            static.copy_(g)
        graph.bwd.replay()
        graph.backward_ran = True
        # copies: autograd may install a returned gradient as .grad, and the next replay would overwrite it
        return None, *_copies(graph.grads)


def _copies(grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """Fresh copies of grads, one copy per contiguous base tensor: the per-set weight gradients of a layer are views
    of one [S, ...] tensor, so this is a few copies per layer rather than one per parameter."""
    copied: dict[int, Tensor] = {}  # id(base) -> its copy (the bases stay alive: the grads are views of them)
    out: list[Tensor | None] = []
    for g in grads:
        base = g if g is None or g._base is None else g._base
        if base is None or not base.is_contiguous():
            out.append(None if g is None else g.clone())
            continue
        if id(base) not in copied:
            copied[id(base)] = base.clone()
        new = copied[id(base)]
        out.append(new.as_strided(g.shape, g.stride(), g.storage_offset() - base.storage_offset()))
    return out


class CUDAGraphs:
    """Captured CUDA graphs of one module's forward+backward, one per input signature (see the module docstring).

    Call it as ``graphs(module, eager, input, hx, offset)`` from the module's forward, where ``eager(input, hx,
    offset)`` is the forward without graphs; it returns what ``eager`` returns.
    """

    def __init__(self, max_graphs: int = 4) -> None:
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, _Graph] = {}
        self._failed: str | None = None
        self._warned_full = False

    def __len__(self) -> int:
        return len(self._graphs)

    def __deepcopy__(self, memo: dict) -> CUDAGraphs:  # a copied module captures its own graphs
        return CUDAGraphs(self.max_graphs)

    def __getstate__(self) -> dict:
        return {"max_graphs": self.max_graphs, "_graphs": {}, "_failed": None, "_warned_full": False}

    def _applies(self, input: Tensor, params: Sequence[Tensor]) -> bool:
        """Whether a replay can stand in for the eager forward here."""
        return (
            input.is_cuda
            and self._failed is None
            and torch.is_grad_enabled()
            and (input.requires_grad or any(p.requires_grad for p in params))
            and not _autocast_on()
            and not torch.cuda.is_current_stream_capturing()
        )

    def __call__(
        self, module: nn.Module, eager: EagerForward, input: Tensor, hx: tuple[Tensor, Tensor] | None, offset: int
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        params = list(module.parameters())
        if not self._applies(input, params):
            return eager(input, hx, offset)
        inputs = [input] if hx is None else [input, *hx]
        key = (
            tuple((tuple(t.shape), tuple(t.stride()), t.dtype, t.device, t.requires_grad) for t in inputs),
            offset,
            module.training,
            tuple((p.data_ptr(), p.dtype, p.requires_grad) for p in params),
        )
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= self.max_graphs:
                if not self._warned_full:
                    warnings.warn(
                        f"{type(module).__name__}: {self.max_graphs} CUDA graphs captured (one per input shape, "
                        "offset and train/eval state); other inputs run without graphs",
                        stacklevel=3,
                    )
                    self._warned_full = True
                return eager(input, hx, offset)

            # The capture reads and differentiates aliases of the parameters (same memory, new leaves): a parameter's
            # own gradient accumulator belongs to the stream it was made on, and if the previous step's outputs keep
            # it alive, a backward captured on the side stream would wait on the default stream and void the capture.
            aliases = _parameter_aliases(module)

            def fn(x: Tensor, *state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
                with _parameters_swapped(module, aliases):
                    out, (h, c) = eager(x, (state[0], state[1]) if state else None, offset)
                return out, h, c

            try:
                graph = _Graph(fn, inputs, list(aliases.values()))
            except RuntimeError as err:  # an op that cannot be captured: run eagerly from now on
                self._failed = f"{type(err).__name__}: {err}"
                warnings.warn(
                    f"{type(module).__name__}: CUDA graph capture failed, running without graphs ({self._failed})",
                    stacklevel=3,
                )
                return eager(input, hx, offset)
            self._graphs[key] = graph
        if graph.busy():  # the last replay's backward is still to come: its activations must not be overwritten
            return eager(input, hx, offset)
        out, h, c = _Replay.apply(graph, *inputs, *params)
        return out, (h, c)
