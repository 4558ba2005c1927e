"""Memory reused from one backward pass to the next (CPU), against glibc's page faults."""

from __future__ import annotations

import torch
from torch import Tensor


class GradBuffers:
    """Weight-gradient memory that a step-weight core reuses from one backward to the next (CPU).

    An untied core's weight gradients are as large as its weights (51 MB for PTB-small, 0.9 GB at H 650). Freshly
    allocated every backward, glibc hands them back to the OS when they are freed (optimizer.zero_grad sets them to
    None) and the next backward page-faults them in again, which cost more than the products themselves. Instead the
    backward writes the gradients of a layer into one [S, 4H, in] buffer kept here and returns views of it, which
    autograd's AccumulateGrad installs as ``.grad`` without a copy (gradients still flow through autograd, so hooks,
    DDP and accumulation work as usual). A buffer is reused only when nothing but this pool references its memory
    (storage use count): a ``.grad`` still set, a gradient a user or hook kept, or one ``torch.autograd.grad``
    returned is never overwritten; a second buffer is then allocated (and kept, at most `max_per_key` per key) and
    the busy one left alone. When grads are accumulated in place instead of set to None, the second buffer is the
    reused scratch space.
    """

    def __init__(self, max_per_key: int = 2) -> None:
        self.max_per_key = max_per_key
        self._pool: dict[object, list[tuple[Tensor, int]]] = {}

    @staticmethod
    def _use_count(t: Tensor) -> int:
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata)

    def take(self, key: object, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A [shape] tensor of like's dtype and device that nothing else references (contents undefined)."""
        # inference tensors (made under torch.inference_mode) cannot be written outside it: a pool of their own
        entries = self._pool.setdefault((key, like.dtype, like.device, torch.is_inference_mode_enabled()), [])
        # The caller always gets a new view: every tensor that holds the memory (a .grad, a ctx attribute, a user's
        # variable) is then a tensor of its own and shows in the storage's use count.
        for buf, idle in entries:
            if buf.shape == shape and self._use_count(buf) == idle:
                return buf.view(shape)
        buf = like.new_empty(shape)
        if len(entries) < self.max_per_key:
            entries.append((buf, self._use_count(buf)))
        elif entries and all(b.shape != shape for b, _ in entries):  # the shape changed: replace a stale buffer
            entries[0] = (buf, self._use_count(buf))
        return buf.view(shape)

    def clear(self) -> None:
        self._pool.clear()

    def __deepcopy__(self, memo: dict) -> GradBuffers:  # a copied module gets its own, empty pool
        return GradBuffers(self.max_per_key)

    def __getstate__(self) -> dict:
        return {"max_per_key": self.max_per_key, "_pool": {}}
