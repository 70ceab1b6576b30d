"""``ScorerPolicy``: a small trainable policy that scores candidate actions (DRRN), and its warm start.

The policy chooses among :func:`simrl.policies.candidates.tagged_candidates` at each turn. Following the
Deep Reinforcement Relevance Network (He et al., 2016, "Deep Reinforcement Learning with a Natural
Language Action Space", ACL; arXiv:1511.04636), the state text and each action text are embedded by
*separate* encoders and an action's score is their inner product:

    score(s, a) = <f(s), g(a)> / temperature,   pi(a | s) = softmax over the candidates of s

``f`` and ``g`` are an ``EmbeddingBag`` (mean of the hashed word uni- and bi-gram ids of
:class:`simrl.policies.features.Hasher`, ``buckets`` rows of ``dim`` floats) followed by an MLP
(``dim -> dim -> dim``, tanh). The texts are :func:`simrl.policies.features.state_text` (prompt, recent
history, flags read off the last observation) and :func:`simrl.policies.features.action_text` (the call
or answer and its provenance tags). Everything runs on CPU: one ``act`` on ~10 candidates takes well
under a millisecond.

Randomness never touches the global generators: the weights are initialised under
``torch.random.fork_rng`` with ``torch.manual_seed(seed)`` (the global state is restored afterwards;
construction holds a lock, so policies built in threads at once each get their seed's weights), sampling inside an episode draws from a generator derived
from ``seed``, the episode's seed and the turn (so concurrent episodes give the same trajectories
however they interleave), outside one from the policy's own ``torch.Generator`` (its state is part of
:meth:`ScorerPolicy.state_dict`), and behaviour cloning shuffles with its own generator.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import math
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simrl.policies.candidates import Tagged, candidate_actions, project, tagged_candidates
from simrl.policies.decisions import KINDS, Decision, DecisionCache
from simrl.policies.features import Hasher, action_text, state_text
from simrl.policies.sparse_rows import RowGrads, make_adam
from simrl.types import Action, Observation, Trajectory, Turn

_NEG = -1e9
"""A finite stand-in for log 0 inside :meth:`ScorerPolicy.log_mix` (its gradient must stay finite)."""
_INIT_LOCK = threading.Lock()
"""Held while a policy seeds torch's global generator and initialises its weights."""


def draw_one(probs: torch.Tensor, generator: torch.Generator) -> int:
    """``int(torch.multinomial(probs, 1, generator=generator))`` for a 1-D ``probs`` of finite non-negative weights
    with a positive sum, by the same operations: torch's CPU multinomial draws one sample as
    ``argmax(probs / q)`` with ``q = empty_like(probs).exponential_(1, generator)`` (the Gumbel-max trick; ATen
    ``native/Distributions.cpp``, ``multinomial``'s fast path), after checks that read the tensor back three times.
    The same draw and generator state as ``torch.multinomial`` (tested over many seeds and sizes), in half the time;
    the checks are left out (a policy's probabilities are ``exp`` of log-probabilities: finite, >= 0, not all 0)."""
    return int(torch.argmax(probs / torch.empty_like(probs).exponential_(1, generator=generator)))


def draw_rows(logp: torch.Tensor, rows: list[tuple[int, int | torch.Generator]], seeded: torch.Generator) -> list[int]:
    """``[draw_one(torch.exp(logp[r, :k]), g) for r, (k, gen) in enumerate(rows)]`` of ``[B, K]`` log-probabilities
    (``-inf`` past a row's ``k``), ``g`` the generator ``gen`` or, for a seed, ``seeded`` reseeded with it just before
    its draw (as :meth:`ScorerPolicy._flush` draws), by the same operations on the whole batch: ``exp`` of every row
    at once (an elementwise function: each element the same number wherever it sits, checked on this build over
    every row length, -inf and denormals included), each row's ``exponential_`` draws written into its first ``k``
    places of a ones tensor (the same draws and generator state as into a fresh tensor of ``k``; each generator
    used in turn, as the loop would), the division (exact) and an ``argmax`` per row, whose padding (``0 / 1``) never
    beats a candidate (``probs / q >= 0``; a tie goes to the first). Six operations a flush instead of six a row."""
    probs = torch.exp(logp)
    q = torch.ones_like(probs)
    for r, (k, gen) in enumerate(rows):
        q[r, :k].exponential_(1, generator=seeded.manual_seed(gen) if isinstance(gen, int) else gen)
    return torch.argmax(probs / q, dim=1).tolist()


_BATCH_DRAWS: list[bool] = []


def batch_draws() -> bool:
    """Whether :func:`draw_rows` gives :func:`draw_one`'s draws on this torch build, by a probe made once: ``exp`` of
    every element the same in a row slice and in the whole matrix, and a row's ``exponential_`` into a slice the
    same draws and generator state as into a fresh tensor, over every row length up to 64 and log-probabilities
    from 0 down to -inf (else each row is drawn alone, as before)."""
    if not _BATCH_DRAWS:
        gen, ok = torch.Generator().manual_seed(20261208), True
        logp = -torch.rand(64, 64, generator=gen) * torch.tensor([1.0, 20.0, 110.0, 1e9])[
            torch.randint(0, 4, (64, 64), generator=gen)]
        logp[torch.rand(64, 64, generator=gen) < 0.1] = float("-inf")
        whole, q = torch.exp(logp), torch.ones(64, 64)
        for r in range(64):
            ok = ok and torch.equal(torch.exp(logp[r, :r + 1]), whole[r, :r + 1])
            a, b = torch.Generator().manual_seed(r), torch.Generator().manual_seed(r)
            ok = ok and torch.equal(torch.empty(r + 1).exponential_(1, generator=a),
                                    q[r, :r + 1].exponential_(1, generator=b)) and torch.equal(a.get_state(), b.get_state())
        _BATCH_DRAWS.append(ok)
    return _BATCH_DRAWS[0]


def _episode_seed() -> Any:
    """:data:`simrl.rollout.EPISODE_SEED` (imported on first use: the rollout module imports policies)."""
    global _EPISODE_SEED
    if _EPISODE_SEED is None:
        from simrl.rollout import EPISODE_SEED

        _EPISODE_SEED = EPISODE_SEED
    return _EPISODE_SEED


_EPISODE_SEED: Any = None


def _longs(values: list[int]) -> torch.Tensor:
    """``torch.tensor(values, dtype=torch.long)``, built through an ``array`` (about 4x faster for the thousands of
    token ids of a batch; the tensor keeps the array alive)."""
    return torch.frombuffer(array.array("q", values), dtype=torch.long) if values else torch.zeros(0, dtype=torch.long)


@dataclass(frozen=True)
class Packed:
    """The tensors :meth:`_Scorer.score_packed` reads for B decision points: each distinct state's and candidate
    text's token ids packed once (``(ids, offsets)`` for ``EmbeddingBag``), and per candidate its state's index
    (``srow``), its text's (``cols``), its row (``rows``) and its position in the row (``pos``), all ``[N]``;
    ``shape`` is ``(B, K)``."""

    states: tuple[torch.Tensor, torch.Tensor]
    bags: tuple[torch.Tensor, torch.Tensor]
    srow: torch.Tensor
    cols: torch.Tensor
    rows: torch.Tensor
    pos: torch.Tensor
    shape: tuple[int, int]

    @staticmethod
    def of(states: list[list[int]], bags: list[tuple[int, ...]], layout: list[tuple[int, list[int]]]) -> Packed:
        """Pack the inputs of :meth:`_Scorer.score_indexed`."""
        return Packed._of(_pack(states), _pack(bags), layout)

    @staticmethod
    def of_bytes(states: list[bytes], bags: list[bytes], layout: list[tuple[int, list[int]]]) -> Packed:
        """:meth:`of` of token ids given as their int64 bytes (``array("q", ids).tobytes()``): the same tensors."""
        return Packed._of(_pack_bytes(states), _pack_bytes(bags), layout)

    @staticmethod
    def _of(states: tuple[torch.Tensor, torch.Tensor], bags: tuple[torch.Tensor, torch.Tensor],
            layout: list[tuple[int, list[int]]]) -> Packed:
        srow: list[int] = []
        cols: list[int] = []
        rows: list[int] = []
        pos: list[int] = []
        width = 0
        for b, (s, c) in enumerate(layout):
            n = len(c)
            srow += [s] * n
            cols += c
            rows += [b] * n
            pos += _RANGES[n] if n < len(_RANGES) else range(n)
            width = max(width, n)
        return Packed(states, bags, _longs(srow), _longs(cols), _longs(rows), _longs(pos), (len(layout), width))


_RANGES = [tuple(range(n)) for n in range(128)]
_PADS = [(-1,) * n for n in range(128)]
"""``range(n)`` as tuples (what :meth:`Packed.of` appends for each row; a tuple extends a list faster)."""


def _pack(bags: list) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, offsets)`` of token-id bags, as ``EmbeddingBag`` takes them."""
    lengths = list(map(len, bags))
    return _longs(list(itertools.chain.from_iterable(bags))), _longs([0, *itertools.accumulate(lengths)][:-1])


def _pack_bytes(bags: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_pack` of bags given as the int64 bytes of their ids (joined, not converted id by id)."""
    flat = b"".join(bags)
    ids = torch.frombuffer(bytearray(flat), dtype=torch.long) if flat else torch.zeros(0, dtype=torch.long)
    return ids, _longs([0, *itertools.accumulate(len(b) >> 3 for b in bags)][:-1])


def _head(head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``head(x)`` for the ``Linear, Tanh, Linear`` heads of :class:`_Scorer`: the same operations on the same
    tensors as the modules' ``forward`` (``F.linear``, ``torch.tanh``), without three module calls' overhead."""
    first, _, second = head
    return nn.functional.linear(torch.tanh(nn.functional.linear(x, first.weight, first.bias)), second.weight,
                                second.bias)


class _Scorer(nn.Module):
    """The two encoders: ``EmbeddingBag(buckets, dim, mean)`` + MLP for states and for actions."""

    def __init__(self, dim: int, buckets: int) -> None:
        super().__init__()
        self.state_bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.action_bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.state_head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, dim))
        self.action_head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, dim))
        self.rows: RowGrads | None = None
        """Set for a pass whose tables get their gradient by rows (:meth:`ScorerPolicy.decision_log_probs`)."""

    def _bag(self, bag: nn.EmbeddingBag, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return bag(ids, offsets) if self.rows is None else self.rows.bag(bag, ids, offsets)

    def score_one(self, state: list[int], actions: list[list[int]]) -> torch.Tensor:
        """Scores ``[K]`` of one state's K candidates (the fast path of ``act``), before temperature."""
        f = self.state_head(self.state_bag(torch.tensor([state])))                       # [1, dim]
        g = self.action_head(self.action_bag(*_pack(actions)))                     # [K, dim]
        return g @ f[0]

    def score_indexed(self, states: list[list[int]], bags: list[tuple[int, ...]], layout: list[tuple[int, list[int]]]
                      ) -> torch.Tensor:
        """Scores ``[B, K]`` (``-inf`` past a row's own K_b) of B decision points whose states and candidate texts
        are given once each: row ``b`` is ``layout[b] = (state index, [bag index of each candidate])``.

        The same numbers as :meth:`forward` on the expanded lists (each distinct state and candidate text is
        encoded once instead of once per occurrence).
        """
        return self.score_packed(Packed.of(states, bags, layout))

    def score_packed(self, packed: Packed) -> torch.Tensor:
        """:meth:`score_indexed` of inputs packed once (:meth:`Packed.of`), e.g. for two policies."""
        f = _head(self.state_head, self._bag(self.state_bag, *packed.states))              # [S, dim]
        g = _head(self.action_head, self._bag(self.action_bag, *packed.bags))              # [U, dim]
        raw = (f[packed.srow] * g[packed.cols]).sum(-1)                                    # [N]
        out = raw.new_full(packed.shape, float("-inf"))
        return out.index_put((packed.rows, packed.pos), raw)

    def forward(self, states: list[list[int]], actions: list[list[list[int]]]) -> torch.Tensor:
        """Scores ``[B, K]`` of each state's candidates (``-inf`` past a state's own K_b), before temperature.

        Args:
            states: B bags of token ids.
            actions: for each state, its K_b >= 1 candidates' bags of token ids.
        """
        f = self.state_head(self._bag(self.state_bag, *_pack(states)))               # [B, dim]
        g = self.action_head(self._bag(self.action_bag, *_pack([a for c in actions for a in c])))  # [N, dim]
        sizes = [len(c) for c in actions]
        rows = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        cols = torch.cat([torch.arange(k) for k in sizes])
        raw = (f[rows] * g).sum(-1)                                                        # [N]
        out = raw.new_full((len(sizes), max(sizes)), float("-inf"))
        return out.index_put((rows, cols), raw)


class ScorerPolicy:
    """A DRRN-style candidate scorer; a :class:`simrl.rollout.Policy` (``async act``).

    Args:
        dim: embedding and hidden size.
        buckets: rows of each ``EmbeddingBag`` (hashed n-gram ids).
        seed: seeds the weights and the sampling generator.
        temperature: softmax temperature of the scores (> 0).
        greedy: True: argmax (evaluation); False: sample from the softmax (training).
        explore_kinds: share of training draws made kind first (:meth:`log_mix`).
        init_scale: the embedding tables' initial weights are torch's N(0, 1) draws times this (in [0, 1]; 0: all
            zero, so a token no gradient has reached yet adds no direction of its own to a bag's mean, only
            dilutes it).

    Attributes:
        module: all trainable parameters (``torch.nn.Module``).
        greedy: the action-selection mode (may be changed at any time).

    Raises:
        ValueError: ``dim`` or ``buckets`` < 1, ``temperature`` <= 0, ``explore_kinds`` or ``init_scale`` out of
            range.
    """

    def __init__(self, *, dim: int = 64, buckets: int = 1 << 15, seed: int = 0, temperature: float = 1.0,
                 greedy: bool = False, explore_kinds: float = 0.0, init_scale: float = 1.0) -> None:
        if dim < 1 or buckets < 1 or not temperature > 0 or not 0 <= explore_kinds < 1 or not 0 <= init_scale <= 1:
            raise ValueError(f"need dim >= 1, buckets >= 1, temperature > 0, 0 <= explore_kinds < 1, 0 <= init_scale "
                             f"<= 1; got {dim}, {buckets}, {temperature}, {explore_kinds}, {init_scale}")
        self.dim, self.buckets, self.seed, self.temperature, self.greedy = dim, buckets, seed, temperature, greedy
        self.explore_kinds, self.init_scale = explore_kinds, init_scale
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):  # threads build policies at once (ablate's evals)
            torch.manual_seed(seed)
            self.module = _Scorer(dim, buckets)
        if init_scale != 1.0:  # the same draws as at 1 (the heads too), scaled
            with torch.no_grad():
                for table in self.tables:
                    table.mul_(init_scale)
        self._gen = torch.Generator().manual_seed(seed)
        self._hasher = Hasher(buckets)
        self.decisions = DecisionCache(self._hasher)
        self._queue: list[tuple[Decision, int | torch.Generator | None, asyncio.Future]] = []

    @property
    def tables(self) -> list[nn.Parameter]:
        """The embedding tables (state, action): what :class:`~simrl.policies.sparse_rows.RowSparseAdam` steps by rows."""
        return [self.module.state_bag.weight, self.module.action_bag.weight]

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (what :meth:`load` rebuilds the policy from; ``init_scale`` only when not 1, so
        a default policy's checkpoint is the same file as before the option existed)."""
        return {"dim": self.dim, "buckets": self.buckets, "seed": self.seed, "temperature": self.temperature,
                "greedy": self.greedy, "explore_kinds": self.explore_kinds,
                **({"init_scale": self.init_scale} if self.init_scale != 1.0 else {})}

    # -- features -------------------------------------------------------------------------------
    def encode(self, task_view: dict[str, str], initial: Observation, turns: list[Turn],
               tagged: list[Tagged]) -> tuple[list[int], list[list[int]]]:
        """Token ids of the state and of each candidate (the inputs of :meth:`scores`)."""
        ids = self._hasher.ids
        return ids(state_text(task_view, initial, turns)), [ids(action_text(a, tags)) for a, tags in tagged]

    def scores(self, states: list[list[int]], actions: list[list[list[int]]], rows: RowGrads | None = None
               ) -> torch.Tensor:
        """Tempered scores ``[B, K]`` (``-inf`` padding) of encoded states and candidates; differentiable (with
        ``rows``, the embedding tables' gradient by rows, as in :meth:`decision_log_probs`)."""
        self.module.rows = rows
        try:
            return self.module(states, actions) / self.temperature
        finally:
            self.module.rows = None

    # -- acting ---------------------------------------------------------------------------------
    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """The chosen candidate: argmax of the scores when ``greedy``, else a draw from :meth:`log_mix`'s
        distribution (:meth:`_sampler`). The decision point is encoded once per state (:attr:`decisions`).

        Concurrent episodes are scored together: each call queues its decision point and the first one schedules
        a flush for when the event loop next runs callbacks, by which time every episode that was ready has queued
        its own; the flush scores them all in one forward pass (:meth:`_flush`; the same probabilities as one at a
        time, to 1e-6, tested). Each draw still uses its own episode's generator, so trajectories do not depend on
        which episodes were batched together beyond that.
        """
        d = self.decisions.get(task_view, initial, turns)
        if len(d.actions) == 1:
            return d.actions[0]
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((d, None if self.greedy else self._sampler(len(turns)), done))
        return d.actions[await done]

    def _flush(self) -> None:
        """Score every queued decision point in one forward pass and resolve each caller's choice."""
        queue, self._queue = self._queue, []
        try:
            with torch.inference_mode():
                scores, kinds = self._scores([d for d, _, _ in queue])
                logp = self.log_mix(scores, kinds) if any(gen is not None for _, gen, _ in queue) else scores
                seeded = torch.Generator()  # reseeded for each episode's draw: the state a fresh one would have
                if all(gen is not None for _, gen, _ in queue) and batch_draws():  # every row drawn at once
                    picks = draw_rows(logp, [(len(d.actions), gen) for d, gen, _ in queue], seeded)
                else:
                    picks = [int(torch.argmax(scores[row, :len(d.actions)])) if gen is None else
                             draw_one(torch.exp(logp[row, :len(d.actions)]),
                                      seeded.manual_seed(gen) if isinstance(gen, int) else gen)
                             for row, (d, gen, _) in enumerate(queue)]
                for i, (_, _, done) in zip(picks, queue):
                    if not done.cancelled():
                        done.set_result(i)
        except BaseException as err:  # noqa: BLE001 - a failure reaches every waiting episode, not the loop
            for _, _, done in queue:
                if not done.done():
                    done.set_exception(err)

    def batch(self, decisions: list[Decision]) -> tuple[Packed, torch.Tensor]:
        """The inputs of a forward pass at B decision points, each distinct state and candidate text once
        (:class:`Packed`), and the kind of each candidate ``[B, K]`` (-1 padding): what :meth:`decision_log_probs`
        scores, computed once for any number of policies (the update's policy and its reference)."""
        states: dict[int, int] = {}
        bags: dict[bytes, int] = {}
        layout = []
        for d in decisions:  # the candidate texts in order of first appearance, as over every candidate of the batch
            distinct, which = d.texts  # (their ids as shared bytes objects: hashed once)
            at = [bags.setdefault(c, len(bags)) for c in distinct]
            layout.append((states.setdefault(id(d), len(states)), [at[j] for j in which]))
        unique = {id(d): d for d in decisions}
        packed = Packed.of_bytes([unique[k].state_bytes for k in states], list(bags), layout)
        width = packed.shape[1]
        flat: list[int] = []
        for d in decisions:
            flat += d.kinds
            flat += _PADS[width - len(d.kinds)] if width - len(d.kinds) < len(_PADS) else [-1] * (width - len(d.kinds))
        return packed, _longs(flat).view(len(decisions), width)

    def _scores(self, decisions: list[Decision], batch: tuple[Packed, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tempered scores ``[B, K]`` (``-inf`` padding) at B decision points (:meth:`batch`, unless given) and the
        kind of each candidate ``[B, K]`` (-1 padding)."""
        packed, kinds = batch if batch is not None else self.batch(decisions)
        return self.module.score_packed(packed) / self.temperature, kinds

    def log_mix(self, scores: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, K]`` of the sampling policy at B decision points (``-inf`` on padding).

        Without exploration (``explore_kinds`` = 0) the softmax of the tempered ``scores``. With ``eps`` =
        ``explore_kinds`` > 0, the mixture ``(1 - eps) pi(a) + eps / n_s * pi(a | kind(a))``: with probability
        eps a kind is drawn uniformly among the ``n_s`` kinds (:data:`~simrl.policies.decisions.KINDS`) present at
        the state, then a candidate of that kind from the policy's own conditional ``pi(a) / pi(kind)``. Every
        kind (call, continue, repeat, drop, answer) is tried at every state with probability at least eps / n_s,
        whatever the scores say; which value of a kind is tried is still the policy's choice. Differentiable
        (the policy gradient of the mixture is on-policy for the episodes it sampled).

        Args:
            scores: ``[B, K]`` tempered scores, ``-inf`` past each row's candidates.
            kinds: ``[B, K]`` kind index of each candidate (any value on padding).
        """
        logp = torch.log_softmax(scores, dim=1)
        eps = self.explore_kinds
        if eps == 0:
            return logp
        real = torch.isfinite(scores)
        padding, kind = ~real, kinds.clamp(min=0)
        finite = logp.masked_fill(padding, _NEG)  # no inf - inf anywhere, so no NaN in the backward pass either
        member = torch.nn.functional.one_hot(kind, len(KINDS)).bool() & real.unsqueeze(2)               # [B, K, C]
        per_kind = torch.logsumexp(finite.unsqueeze(2).masked_fill(~member, _NEG), dim=1)                # [B, C]
        present = member.any(1).sum(1, keepdim=True).clamp(min=1)                                        # [B, 1]
        own = per_kind.gather(1, kind)                                                                   # [B, K]
        explore = math.log(eps) - torch.log(present.float()) + finite - own
        mixed = torch.logaddexp(math.log1p(-eps) + finite, explore)
        return mixed.masked_fill(padding, float("-inf"))

    def _sampler(self, turn: int) -> int | torch.Generator:
        """The draw's generator: inside an episode (:data:`simrl.rollout.EPISODE_SEED`), the seed of one derived
        from the policy seed, the episode seed and the turn (a ``torch.Generator`` seeded with it at the draw), so
        concurrent episodes draw the same whatever their interleaving; outside one, the policy's own generator."""
        episode = _episode_seed().get()
        if episode is None:
            return self._gen
        return zlib.crc32(f"{self.seed}:{episode}:{turn}".encode())

    def decisions_of(self, traj: Trajectory, task_view: dict[str, str]) -> list[Decision]:
        """The decision point before each turn of ``traj`` (from :attr:`decisions`: those met while acting)."""
        return [self.decisions.get(task_view, traj.initial, traj.turns[:t]) for t in range(len(traj.turns))]

    def decision_log_probs(self, decisions: list[Decision], actions: list[Action], *, full: bool = False,
                           rows: RowGrads | None = None, batch: tuple[Packed, torch.Tensor] | None = None) -> tuple:
        """Log-probabilities (:meth:`log_mix`) of ``actions[i]`` at ``decisions[i]``, all in one forward pass.

        Each distinct state and candidate text is encoded once (:meth:`_Scorer.score_indexed`). With ``rows``,
        the embedding tables get their gradient by rows (:class:`~simrl.policies.sparse_rows.RowGrads`: the same
        numbers; ``rows.into()`` after the backward pass). ``batch``: :meth:`batch` of ``decisions``, if already made.

        Returns:
            ``(logp, mask)``, both ``[N]``: ``mask[i]`` False where the action was not among the candidates
            (then ``logp[i]`` is 0). Differentiable. With ``full``, also the ``[N, K]`` log-probabilities of
            every candidate (``-inf`` on padding).
        """
        if not decisions:
            empty = (torch.zeros(0), torch.zeros(0, dtype=torch.bool))
            return empty + (torch.zeros(0, 0),) if full else empty
        self.module.rows = rows
        try:
            logp = self.log_mix(*self._scores(decisions, batch))  # the sampling distribution, whatever the acting mode
        finally:
            self.module.rows = None
        targets = [d.target(a) for d, a in zip(decisions, actions)]
        mask = torch.tensor([i >= 0 for i in targets], dtype=torch.bool)
        picked = logp.gather(1, torch.tensor([max(i, 0) for i in targets]).unsqueeze(1)).squeeze(1)
        picked = torch.where(mask, picked, torch.zeros_like(picked))
        return (picked, mask, logp) if full else (picked, mask)

    def log_probs(self, traj: Trajectory, task_view: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of a trajectory's actions under the current weights (differentiable).

        Returns:
            ``(logp, mask)``, both ``[T]`` for T turns: ``logp[t]`` = log pi(action_t | candidates of
            ``traj.turns[:t]``) as in :meth:`act`; ``mask[t]`` False where the action was not among the
            candidates (then ``logp[t]`` is 0).
        """
        return self.decision_log_probs(self.decisions_of(traj, task_view), [t.action for t in traj.turns])

    # -- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"config", "weights", "generator"}``: everything needed to continue exactly."""
        return {"config": self.config, "weights": self.module.state_dict(), "generator": self._gen.get_state()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Load weights (and the sampling generator's state when present); a bare module state dict works too.

        Raises:
            RuntimeError: weights of another shape (another ``dim`` or ``buckets``).
        """
        self.module.load_state_dict(sd["weights"] if "weights" in sd else sd)
        if "generator" in sd:
            self._gen.set_state(sd["generator"])

    def save(self, path: str | Path) -> None:
        """Write config, weights and generator state to one file (``torch.save``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> ScorerPolicy:
        """A policy saved by :meth:`save` (``torch.load(weights_only=True)``).

        Raises:
            SimrlError: the file is not such a checkpoint (binary garbage, YAML, truncated, another model).
        """
        from simrl.errors import SimrlError

        try:
            sd = torch.load(Path(path), weights_only=True)
            policy = cls(**sd["config"])
            policy.load_state_dict(sd)
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 - torch reports a bad file with many exception types
            reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise SimrlError(f"{path}: not a scorer checkpoint of simrl ({reason}); give a run's final.pt, "
                             "warmstart.pt or checkpoints/step-N.pt") from None
        return policy


def behaviour_cloning(policy: ScorerPolicy, demos: list[Trajectory], views: dict[str, dict[str, str]], *,
                      epochs: int = 5, lr: float = 0.01, seed: int = 0, batch_size: int = 32) -> dict[str, float]:
    """Supervised warm start: minimise the cross-entropy of each demonstration action among its candidates.

    A demonstration action is mapped to its candidate by :func:`simrl.policies.candidates.project` (the same
    action, or the same tool call without the optional arguments the candidates leave out); turns with no
    such candidate are skipped (counted in ``coverage``). Adam (the embedding tables by rows, the same numbers:
    :mod:`simrl.policies.sparse_rows`), mini-batches of
    ``batch_size`` turns, shuffled each epoch by a generator seeded with ``seed``.

    Args:
        policy: trained in place.
        demos: demonstration trajectories (e.g. the scripted experts' successful ones).
        views: ``task_id -> Task.policy_view()`` for every demo's task.

    Returns:
        ``loss`` (mean cross-entropy, nats, last epoch), ``accuracy`` (argmax == demo action, last epoch),
        ``coverage`` (share of demo turns whose action was a candidate), ``samples`` (turns trained on).

    Raises:
        KeyError: a demo whose task has no view.
    """
    samples, total = [], 0
    for traj in demos:
        view = views[traj.task_id]
        for t, turn in enumerate(traj.turns):
            total += 1
            tagged = tagged_candidates(view, traj.initial, traj.turns[:t])
            target = project(turn.action, [a for a, _ in tagged])
            if target is not None:
                state, cands = policy.encode(view, traj.initial, traj.turns[:t], tagged)
                samples.append((state, cands, target))
    stats = {"loss": 0.0, "accuracy": 0.0, "coverage": len(samples) / total if total else 0.0,
             "samples": float(len(samples))}
    if not samples:
        return stats
    opt = make_adam(policy.module.parameters(), lr, policy.tables)  # the embedding tables stepped by rows
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        for batch in torch.randperm(len(samples), generator=gen).split(batch_size):
            chosen = [samples[int(i)] for i in batch]
            rows = RowGrads(opt)
            logp = torch.log_softmax(policy.scores([s for s, _, _ in chosen], [c for _, c, _ in chosen], rows), dim=1)
            target = torch.tensor([y for _, _, y in chosen])
            loss = -logp.gather(1, target.unsqueeze(1)).mean()
            opt.zero_grad()
            loss.backward()
            rows.into()
            opt.step()
            loss_sum += float(loss.detach()) * len(chosen)
            correct += int((logp.argmax(1) == target).sum())
        stats["loss"], stats["accuracy"] = loss_sum / len(samples), correct / len(samples)
    return stats


class RandomCandidatePolicy:
    """The ``candidates`` baseline: a uniform random choice among the candidate actions of each turn.

    What the action space alone is worth (:func:`simrl.policies.candidates.candidate_actions`); a trained
    policy that does not beat it has learned nothing. The draw of a turn comes from a generator seeded by
    ``seed``, the episode seed (:data:`simrl.rollout.EPISODE_SEED`) and the turn, so concurrent episodes
    give the same trajectories whatever their interleaving; a :class:`simrl.rollout.Policy`.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed, self.greedy = seed, False

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """One candidate, uniformly at random."""
        import random

        from simrl.rollout import EPISODE_SEED

        cands = candidate_actions(task_view, initial, turns)
        rng = random.Random(f"simrl-candidates-{self.seed}:{EPISODE_SEED.get()}:{len(turns)}")
        return cands[rng.randrange(len(cands))]
