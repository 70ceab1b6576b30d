"""Adam on embedding tables row by row: the same numbers as dense Adam, for the rows a step can change.

The scorer policy's two hashed-n-gram tables hold 32,768 x 64 weights each, of which a training step reads a few
hundred rows. Dense training touches every weight at every step: the backward pass of ``EmbeddingBag`` fills a
new 32,768 x 64 gradient per table, and Adam reads and writes the weights and both moments of every row. Here:

* :class:`RowGrads` computes a pass's ``EmbeddingBag`` outputs on a compact copy of the rows the pass reads
  (``torch.unique`` of its ids, sorted; the ids renumbered in the same order), so the backward pass gives the
  gradient of those rows only. The outputs and the gradient rows are bitwise those of the dense module (the same
  kernel sums the same vectors in the same order; tested), and every other row's gradient is exactly 0.
* :class:`RowSparseAdam` is ``torch.optim.Adam`` (fused where the build has the kernel) that takes such a
  gradient (:meth:`RowGrads.into`: the rows written into a persistent zero gradient, so gradient clipping and any
  other reader still see the dense gradient) and updates a table's *active* rows only: the rows that ever had a
  gradient (or, after :meth:`~RowSparseAdam.load_state_dict`, a nonzero moment). Adam leaves any other row
  exactly as it is: with gradient, first and second moment all 0 and no weight decay, ``m = b1*0 + (1-b1)*0 =
  0``, ``v = 0`` and ``p - lr * 0 / (sqrt(0) + eps) = p`` (Kingma & Ba, 2015, "Adam", Algorithm 1). The active
  rows are gathered, stepped by torch's own Adam (``torch.optim.adam.adam``, the same call ``Adam.step`` makes,
  with the table's own step count) and written back, so they get the very numbers dense Adam gives them.

Exactness needs one more thing: torch's vectorised kernels process a tensor's last partial SIMD register with
scalar code, which may round differently, so an element must sit in a full register in the compact copy exactly
when it does in the table. That holds for rows of a multiple of :data:`ROW_ALIGN` floats (no partial register
anywhere in either tensor: the widest SIMD register holds 64 float32, SVE's 2048 bits); a table with other rows
is stepped densely (still exact, just not faster). All of this is with one intra-op thread, as the embedded
trainer runs: with several, torch's kernels split their work by where tensors happen to sit in memory, and even
two dense runs differ in the last bits (measured). The state dict is ``torch.optim.Adam``'s, entry for entry, so
checkpoints load either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam

ROW_ALIGN = 64
"""Row length (elements) of the tables stepped row by row: a multiple of the widest SIMD register (64 float32)."""


class RowSparseAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, lr=lr)``, fused where possible, stepping the rows of ``tables`` that can change.

    Bitwise the same parameters, moments and step counts as ``torch.optim.Adam`` with the same ``fused`` setting
    (:attr:`fused`), given the same gradients (tested over many steps of random sparse gradients). A table's
    gradient may be given as rows (:meth:`RowGrads.into`); any other gradient (a dense one in ``p.grad``) is
    stepped as Adam steps it.

    Args:
        params: the parameters, as for ``torch.optim.Adam`` (one group).
        lr: the learning rate.
        tables: 2-D parameters among ``params`` (embedding tables) to step row by row; those whose row length
            is not a multiple of :data:`ROW_ALIGN` are stepped densely.

    Raises:
        ValueError: a table that is not a 2-D parameter of ``params``.
    """

    def __init__(self, params: Iterable[Any], *, lr: float, tables: Iterable[nn.Parameter] = ()) -> None:
        params = list(params)
        try:
            super().__init__(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):  # no fused CPU kernel in this build
            super().__init__(params, lr=lr)
        ids = {id(p) for group in self.param_groups for p in group["params"]}
        tables = list(tables)
        if any(t.dim() != 2 or id(t) not in ids for t in tables):
            raise ValueError("RowSparseAdam: every table must be a 2-D parameter among params")
        self._tables = {t: t.shape[1] % ROW_ALIGN == 0 for t in tables}  # table -> stepped row by row
        self._grads: dict[nn.Parameter, torch.Tensor] = {}   # table -> its persistent gradient (0 but for _pending)
        self._pending: dict[nn.Parameter, torch.Tensor] = {}  # table -> rows written into its gradient
        self._active: dict[nn.Parameter, torch.Tensor] = {}   # table -> rows whose moments may be nonzero (sorted)

    @property
    def fused(self) -> bool:
        """Whether the fused Adam kernel steps the parameters."""
        return bool(self.param_groups[0].get("fused"))

    def tables(self) -> list[nn.Parameter]:
        """The tables whose gradient may be given by rows."""
        return list(self._tables)

    def set_rows(self, table: nn.Parameter, rows: torch.Tensor, values: torch.Tensor) -> None:
        """``table.grad``: zero but for ``rows`` (sorted, distinct), which hold ``values`` ``[len(rows), dim]``."""
        grad = self._grads.get(table)
        if grad is None:
            grad = self._grads[table] = torch.zeros_like(table, memory_format=torch.preserve_format)
        self._clear(table)
        grad.index_copy_(0, rows, values)
        self._pending[table] = rows
        table.grad = grad

    def aligned(self, table: nn.Parameter) -> bool:
        """Whether ``table`` is stepped row by row (its rows a multiple of :data:`ROW_ALIGN` elements)."""
        return bool(self._tables.get(table))

    def rows_of(self, table: nn.Parameter) -> torch.Tensor | None:
        """The rows of ``table.grad`` given by :meth:`set_rows` (every other row is exactly +0), or None when the
        table's gradient is not the one set by rows."""
        rows = self._pending.get(table)
        return rows if rows is not None and table.grad is self._grads.get(table) else None

    def _clear(self, table: nn.Parameter) -> None:
        rows = self._pending.pop(table, None)
        if rows is not None:
            self._grads[table].index_fill_(0, rows, 0)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Adam step (``closure`` as for ``torch.optim.Adam``); a table whose gradient was given by
        :meth:`set_rows` has its active rows stepped, every other parameter with a gradient is stepped whole."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
            has_complex = self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps)
            compact = []
            for i, p in enumerate(params):
                rows = self._pending.get(p)
                if rows is None or not self._tables.get(p) or grads[i] is not self._grads[p] or group["amsgrad"]:
                    continue
                before = self._active.get(p)
                active = self._active[p] = rows if before is None else torch.unique(torch.cat([before, rows]))
                compact.append((i, p, active, exp_avgs[i], exp_avg_sqs[i]))
                params[i], grads[i] = p.detach().index_select(0, active), grads[i].index_select(0, active)
                exp_avgs[i], exp_avg_sqs[i] = exp_avgs[i].index_select(0, active), exp_avg_sqs[i].index_select(0, active)
            beta1, beta2 = group["betas"]
            adam(params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, amsgrad=group["amsgrad"],
                 has_complex=has_complex, beta1=beta1, beta2=beta2, lr=group["lr"],
                 weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                 foreach=group["foreach"], capturable=group["capturable"], differentiable=group["differentiable"],
                 fused=group["fused"], grad_scale=getattr(self, "grad_scale", None),
                 found_inf=getattr(self, "found_inf", None), decoupled_weight_decay=group["decoupled_weight_decay"])
            for i, p, active, exp_avg, exp_avg_sq in compact:
                p.detach().index_copy_(0, active, params[i])
                exp_avg.index_copy_(0, active, exp_avgs[i])
                exp_avg_sq.index_copy_(0, active, exp_avg_sqs[i])
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Adam.load_state_dict``; a table's active rows are then those with a nonzero moment
        (-0.0 counts as nonzero: dense Adam would turn it into +0.0)."""
        super().load_state_dict(state_dict)
        self._active.clear()
        for table in self._tables:
            state = self.state.get(table, {})
            if "exp_avg" in state:
                held = [(m != 0) | torch.signbit(m) for m in (state["exp_avg"], state["exp_avg_sq"])]
                self._active[table] = (held[0] | held[1]).any(1).nonzero().flatten()


class RowGrads:
    """One forward pass whose embedding tables (those of ``optimizer``) get their gradient by rows.

    Use :meth:`bag` in place of calling an ``nn.EmbeddingBag``; after ``loss.backward()``, :meth:`into` gives
    each table's gradient to the optimizer (:meth:`RowSparseAdam.set_rows`). Each table may be read once a pass.
    """

    def __init__(self, optimizer: RowSparseAdam) -> None:
        self.optimizer = optimizer
        self._tables = set(optimizer.tables())
        self._read: dict[nn.Parameter, tuple[torch.Tensor, torch.Tensor]] = {}

    def bag(self, module: nn.EmbeddingBag, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``module(ids, offsets)``, bitwise; for a table of the optimizer computed on the rows ``ids`` read.

        Raises:
            ValueError: the table was already read in this pass.
        """
        table = module.weight
        if table not in self._tables or not torch.is_grad_enabled():
            return module(ids, offsets)
        if table in self._read:
            raise ValueError("RowGrads: an embedding table read twice in one pass")
        rows, local = torch.unique(ids, sorted=True, return_inverse=True)
        leaf = table.detach().index_select(0, rows).requires_grad_()
        self._read[table] = (rows, leaf)
        return nn.functional.embedding_bag(local, leaf, offsets, module.max_norm, module.norm_type,
                                           module.scale_grad_by_freq, module.mode, module.sparse, None,
                                           module.include_last_offset, module.padding_idx)

    def into(self) -> None:
        """Give the optimizer each table's gradient from the backward pass (a table the pass did not reach keeps
        ``grad`` None, as the dense module would)."""
        for table, (rows, leaf) in self._read.items():
            if leaf.grad is not None:
                self.optimizer.set_rows(table, rows, leaf.grad)
        self._read.clear()


def make_adam(params: Iterable[Any], lr: float, tables: Iterable[nn.Parameter] = ()) -> RowSparseAdam:
    """Adam for the scorer policy (fused where this torch build has the CPU kernel, which is much faster on the
    embedding tables), stepping ``tables`` row by row (:class:`RowSparseAdam`)."""
    return RowSparseAdam(params, lr=lr, tables=tables)


@torch.no_grad()
def clip_grad_norm_(params: Iterable[nn.Parameter], max_norm: float, optimizer: RowSparseAdam | None = None
                    ) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm)`` (2-norm), bitwise, scaling a table's gradient given by
    rows (:meth:`RowSparseAdam.set_rows` of ``optimizer``) on those rows only.

    The total norm is torch's own (:func:`torch.nn.utils.get_total_norm` of the gradients; a table's given by rows
    as those rows alone where :func:`compact_norms` holds: the same number); the scale is
    ``min(max_norm / (norm + 1e-6), 1)`` as torch computes it. Scaling is one multiplication per element, so the
    rows scaled alone get the numbers the whole tensor would; every other row of such a gradient is +0, which a
    finite scale >= 0 leaves +0 (any other scale, a NaN norm's, is applied to every element as torch does). What
    this saves is the passes over the 32,768 x 64 tables' zeros at every step (the scaling, and the norm).

    Returns:
        The total norm (a 0-dim tensor), as torch returns it.
    """
    params = [p for p in params if p.grad is not None]
    if optimizer is None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params]
    if compact_norms():  # a table's norm from its gradient's rows (the others are +0): the same number
        for i, p in enumerate(params):
            if (rows := optimizer.rows_of(p)) is not None and optimizer.aligned(p):
                grads[i] = p.grad.index_select(0, rows)
    total = torch.nn.utils.get_total_norm(grads, 2.0, False, None)
    if not params:
        return total
    coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
    if not 0.0 <= float(coef) < math.inf:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return total
    dense = []
    for p in params:
        rows = optimizer.rows_of(p)
        if rows is None:
            dense.append(p.grad)
        else:
            p.grad.index_copy_(0, rows, p.grad.index_select(0, rows).mul_(coef))
    if dense:
        torch._foreach_mul_(dense, coef)
    return total


_COMPACT: list[bool] = []  # compact_norms' probe, once per process


def compact_norms() -> bool:
    """Whether a gradient's 2-norm may be taken over its nonzero rows alone (sorted, rows of :data:`ROW_ALIGN`
    elements, every other row +0): the same number as over the whole tensor.

    torch's CPU 2-norm of a contiguous float tensor (``linalg.vector_norm``: the vectorised last-dimension reduction
    of ATen's ``norm_kernel_tensor_iterator_impl``) accumulates ``x * x`` lane by lane (lane = position modulo the
    SIMD width) in order, then adds the lanes and a scalar tail. A +0 row adds exactly 0 to every lane, and a row of
    a multiple of the widest SIMD width keeps each element's lane, so the rows alone give the same sums in the same
    order. That is this kernel's property, with one intra-op thread (several split the work by position); so this
    holds only with one thread, and only once a probe agreed: sparse gradients of a wide dynamic range (where the
    order of the additions changes the result), their norm over the rows and over the whole table, bitwise equal
    (else every norm is taken over the whole tensor, as before).
    """
    if torch.get_num_threads() != 1:
        return False
    if not _COMPACT:
        gen = torch.Generator().manual_seed(20261208)
        ok = True
        for n in (37, 300, 1000):
            rows = torch.randperm(32_768, generator=gen)[:n].sort().values
            values = torch.randn(n, ROW_ALIGN, generator=gen) * torch.exp(torch.randn(n, 1, generator=gen) * 8)
            whole = torch.zeros(32_768, ROW_ALIGN).index_copy_(0, rows, values)
            ok = ok and torch.equal(torch.linalg.vector_norm(whole, 2), torch.linalg.vector_norm(values, 2))
        _COMPACT.append(ok)
    return _COMPACT[0]
