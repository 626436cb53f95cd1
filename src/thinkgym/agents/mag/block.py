"""The Memory-as-a-Gate (MAG) block of Titans (Behrouz et al. 2025), in PyTorch, CPU-sized.

Symbols follow the paper (section 4.2, "Memory as a Gate"):

* persistent memory ``P = [p_1 .. p_{N_p}]`` — learnable, input-independent tokens
  prepended to the input, ``x~ = P || x``;
* ``y = SW-Attn*(x~)`` — sliding-window attention: token ``t`` attends to the tokens
  ``t - w + 1 .. t`` of its window and, always, to the persistent prefix (never to
  anything else; :func:`sliding_window_mask`);
* ``M`` — the neural long-term memory (:class:`NeuralMemory`), a small MLP whose
  weights are *state*: they are written at test time by a surprise signal and read
  without being written;
* ``o = y (x) M(x~)`` — the gate: both branches are RMS-normalised with learnable
  vector weights, and the memory branch goes through a sigmoid, ``o = n_y(y) *
  sigmoid(n_M(M(x)))``; the block returns ``x + W_O o`` (a residual block).

The memory's write rule (Titans eqs. 13-14, one step per chunk of ``C`` tokens, the
paper's mini-batch form): keys and values are projected from the input,
``k = W_K x``, ``v = W_V x``; the associative loss is ``l(M; x) = ||M(k) - v||^2``;
the surprise carries momentum, ``S_t = eta * S_{t-1} - theta * grad l(M_{t-1}; x_t)``;
and the weights forget, ``M_t = (1 - alpha) * M_{t-1} + S_t``. A read is
``M*(q)`` with ``q = W_Q x`` and changes nothing. Within a chunk, tokens read the
memory as it was before the chunk (so every output is causal), then the chunk is
written.

State is explicit: :class:`MAGState` holds the memory weights and momentum of each
batch row plus the last ``w - 1`` inputs (the attention window's carry-over).
:meth:`MAGBlock.forward` continues from the state of the previous call and keeps the
new one; :meth:`MAGBlock.reset` forgets it. Calls split at chunk boundaries give the
same outputs as one call over the whole sequence.

    >>> import torch
    >>> block = MAGBlock(MAGConfig(d_model=16, num_heads=2, window=4, chunk_size=4))
    >>> block(torch.randn(2, 8, 16)).shape
    torch.Size([2, 8, 16])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thinkgym.errors import ConfigError, check_int_fields

__all__ = ["MAGBlock", "MAGConfig", "MAGState", "MemoryState", "NeuralMemory",
           "sliding_window_mask"]


@dataclass(frozen=True)
class MAGConfig:
    """Sizes and memory hyper-parameters of a :class:`MAGBlock`."""

    d_model: int = 64
    """Width of the block (the causal LM's hidden states are projected to it)."""
    num_heads: int = 4
    """Attention heads (``d_model`` must be divisible by it)."""
    num_persistent: int = 4
    """``N_p``: learnable persistent tokens prepended to every input."""
    window: int = 64
    """``w``: a token attends to itself and the ``w - 1`` tokens before it (+ the prefix)."""
    memory_hidden: int = 64
    """Hidden width of the memory MLP ``M``."""
    chunk_size: int = 32
    """``C``: tokens per memory write (the paper's mini-batch of the inner loop)."""
    eta: float = 0.9
    """``eta``: momentum of the surprise, in [0, 1)."""
    theta: float = 0.1
    """``theta``: inner learning rate of the momentary surprise, > 0."""
    alpha: float = 0.01
    """``alpha``: forgetting (weight decay) of the memory per write, in [0, 1)."""
    max_surprise_norm: float = 25.0
    """Per-row cap on the norm of the momentary surprise ``grad l`` (both memory weights
    together). Without it the inner loop can run away: on SmolLM2 hidden states, healthy
    writes had norms of 3-8 (99th percentile 15-22) while one training seed's grew to
    540 and then NaN."""
    differentiable_memory: bool = True
    """Backpropagate through the memory writes while training (the outer loop learns
    ``W_K, W_V`` and ``M_0``); off: writes are detached (cheaper, ``W_K, W_V`` stay fixed)."""

    def __post_init__(self) -> None:
        check_int_fields(self, {"d_model": 1, "num_heads": 1, "num_persistent": 0, "window": 1,
                                "memory_hidden": 1, "chunk_size": 1})
        if self.d_model % self.num_heads:
            raise ConfigError("d_model must be divisible by num_heads", field="num_heads",
                              got=(self.d_model, self.num_heads), fix="e.g. d_model=64, "
                              "num_heads=4")
        for name, lo, hi in (("eta", 0.0, 1.0), ("alpha", 0.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and lo <= value < hi):
                raise ConfigError(f"must lie in [{lo}, {hi})", field=name, got=value,
                                  fix=f"pass e.g. {name}=0.1")
        for name, example in (("theta", 0.1), ("max_surprise_norm", 25.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise ConfigError("must be > 0", field=name, got=value,
                                  fix=f"pass e.g. {name}={example}")


@dataclass
class MemoryState:
    """Per-row memory weights ``M_t`` (two MLP matrices) and their momentum ``S_t``."""

    w1: Tensor
    """``(B, d, h)`` first layer of ``M``."""
    w2: Tensor
    """``(B, h, d)`` second layer of ``M``."""
    s1: Tensor
    """``(B, d, h)`` surprise momentum of ``w1``."""
    s2: Tensor
    """``(B, h, d)`` surprise momentum of ``w2``."""

    @property
    def batch_size(self) -> int:
        return int(self.w1.shape[0])

    def detach(self) -> MemoryState:
        """The same state, cut from the autograd graph."""
        return MemoryState(self.w1.detach(), self.w2.detach(), self.s1.detach(),
                           self.s2.detach())


@dataclass
class MAGState:
    """Everything a :class:`MAGBlock` carries from one call to the next."""

    memory: MemoryState
    """The long-term memory's weights and momentum."""
    tail: Tensor
    """``(B, <= w - 1, d)`` the last normalised inputs: the next call's window reaches them."""
    pending: Tensor
    """``(B, < C, d)`` inputs of the unfinished chunk (read, not yet written)."""

    def detach(self) -> MAGState:
        return MAGState(self.memory.detach(), self.tail.detach(), self.pending.detach())


class NeuralMemory(nn.Module):
    """Titans' long-term memory ``M``: an MLP whose weights are written at test time.

    ``M(k) = silu(k W_1) W_2``; ``W_1, W_2`` start at the learned ``M_0`` for every row
    and are updated by :meth:`write` (surprise with momentum ``eta``, step ``theta``,
    forgetting ``alpha``). :meth:`read` evaluates ``M(q)``, ``q = W_Q x``, without update.
    """

    def __init__(self, config: MAGConfig) -> None:
        super().__init__()
        d, h = config.d_model, config.memory_hidden
        self.config = config
        self.w_k = nn.Linear(d, d, bias=False)
        self.w_v = nn.Linear(d, d, bias=False)
        self.w_q = nn.Linear(d, d, bias=False)
        self.w1_0 = nn.Parameter(torch.randn(d, h) / math.sqrt(d))
        self.w2_0 = nn.Parameter(torch.zeros(h, d))

    def init_state(self, batch_size: int) -> MemoryState:
        """``M_0`` for ``batch_size`` rows, zero momentum."""
        w1 = self.w1_0.unsqueeze(0).expand(batch_size, -1, -1)
        w2 = self.w2_0.unsqueeze(0).expand(batch_size, -1, -1)
        return MemoryState(w1, w2, torch.zeros_like(w1), torch.zeros_like(w2))

    @staticmethod
    def evaluate(w1: Tensor, w2: Tensor, k: Tensor) -> Tensor:
        """``M(k)`` with per-row weights: ``(B, d, h), (B, h, d), (B, T, d) -> (B, T, d)``."""
        return torch.bmm(F.silu(torch.bmm(k, w1)), w2)

    def read(self, state: MemoryState, x: Tensor) -> Tensor:
        """``M*(q)``, ``q = W_Q x`` (L2-normalised): ``(B, T, d) -> (B, T, d)``; no write."""
        q = F.normalize(self.w_q(x), dim=-1)
        return self.evaluate(state.w1, state.w2, q)

    def surprise_loss(self, state: MemoryState, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``l(M; x) = ||M(k) - v||^2`` per row, summed over tokens, over ``C``: ``(B,)``."""
        k = F.normalize(self.w_k(x), dim=-1)
        v = self.w_v(x)
        err = (self.evaluate(state.w1, state.w2, k) - v).pow(2).sum(-1)  # (B, T)
        if mask is not None:
            err = err * mask
        return err.sum(-1) / self.config.chunk_size

    def write(self, state: MemoryState, x: Tensor, mask: Tensor | None = None) -> MemoryState:
        """One write with the chunk ``x`` ``(B, T<=C, d)``; ``mask`` ``(B, T)`` skips padding.

        ``S_t = eta S_{t-1} - theta grad l``; ``M_t = (1 - alpha) M_{t-1} + S_t``, with
        ``grad l`` scaled down per row to norm ``max_surprise_norm`` when above it.
        """
        c = self.config
        graph = c.differentiable_memory and torch.is_grad_enabled() and self.training
        with torch.enable_grad():
            w1, w2 = state.w1, state.w2
            if not graph:
                w1 = w1.detach().requires_grad_(True)
                w2 = w2.detach().requires_grad_(True)
                x = x.detach()
            elif not w1.requires_grad:  # M_0 frozen but inputs trainable: still need the grad
                w1, w2 = w1.requires_grad_(True), w2.requires_grad_(True)
            loss = self.surprise_loss(MemoryState(w1, w2, state.s1, state.s2), x, mask).sum()
            g1, g2 = torch.autograd.grad(loss, (w1, w2), create_graph=graph)
        # a constant factor, as in gradient clipping (sqrt's gradient at 0 would be inf)
        norm = (g1.pow(2).sum((1, 2)) + g2.pow(2).sum((1, 2))).detach().sqrt()  # (B,)
        scale = (c.max_surprise_norm / norm.clamp(min=1e-12)).clamp(max=1.0)[:, None, None]
        g1, g2 = g1 * scale, g2 * scale
        s1 = c.eta * state.s1 - c.theta * g1
        s2 = c.eta * state.s2 - c.theta * g2
        new = MemoryState((1 - c.alpha) * w1 + s1, (1 - c.alpha) * w2 + s2, s1, s2)
        return new if graph else new.detach()


def sliding_window_mask(num_persistent: int, num_past: int, num_new: int, window: int,
                        device: torch.device | None = None) -> Tensor:
    """``(num_new, num_persistent + num_past + num_new)`` bool mask, True = may attend.

    Keys are ``[persistent | past | new]``; the query of new token ``i`` (absolute
    position ``num_past + i``) sees every persistent token and the tokens at
    positions ``num_past + i - window + 1 .. num_past + i``, nothing else.

    >>> sliding_window_mask(1, 0, 3, 2).int().tolist()
    [[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]]
    """
    q = torch.arange(num_new, device=device).unsqueeze(1) + num_past  # (T, 1)
    k = torch.arange(num_past + num_new, device=device).unsqueeze(0)  # (1, L + T)
    local = (k <= q) & (k > q - window)
    prefix = torch.ones(num_new, num_persistent, dtype=torch.bool, device=device)
    return torch.cat([prefix, local], dim=1)


class _RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class MAGBlock(nn.Module):
    """Persistent memory + sliding-window attention, gated with a neural long-term memory.

    ``forward(x)`` ``(B, T, d) -> (B, T, d)`` continues from :attr:`state` (the
    memory written by earlier calls and their last ``w - 1`` inputs) and stores the
    new state; :meth:`reset` starts over. ``mask`` ``(B, T)`` (1 = token, 0 =
    right padding) keeps padding out of the attention keys and the memory writes.
    """

    def __init__(self, config: MAGConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or MAGConfig()
        d = c.d_model
        self.persistent = nn.Parameter(torch.randn(c.num_persistent, d) * 0.02)  # P
        self.norm_in = _RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.memory = NeuralMemory(c)
        self.norm_y = _RMSNorm(d)  # learnable vector weights of the attention branch
        self.norm_m = _RMSNorm(d)  # ... and of the memory branch
        self.w_o = nn.Linear(d, d, bias=False)
        self.state: MAGState | None = None
        """State after the last call (None: the next call starts from ``M_0``)."""

    def reset(self) -> None:
        """Forget the memory writes and the window carry-over: the next call starts fresh."""
        self.state = None

    def init_state(self, batch_size: int, like: Tensor) -> MAGState:
        empty = like.new_zeros(batch_size, 0, self.config.d_model)
        return MAGState(self.memory.init_state(batch_size), empty, empty)

    def attention(self, h: Tensor, tail: Tensor, mask: Tensor | None = None) -> Tensor:
        """``y = SW-Attn*(P || x)`` for the new normalised inputs ``h`` ``(B, T, d)``.

        ``tail`` ``(B, L, d)`` are earlier inputs still inside the window.
        """
        c = self.config
        b, t, d = h.shape
        nh, hd = c.num_heads, d // c.num_heads
        keys_in = torch.cat([self.persistent.unsqueeze(0).expand(b, -1, -1), tail, h], dim=1)
        q = self.qkv(h)[..., :d]
        kv = self.qkv(keys_in)[..., d:]
        k, v = kv.split(d, dim=-1)

        def heads(z: Tensor) -> Tensor:
            return z.view(b, z.shape[1], nh, hd).transpose(1, 2)  # (B, nh, S, hd)

        allowed = sliding_window_mask(c.num_persistent, tail.shape[1], t, c.window, h.device)
        allowed = allowed.unsqueeze(0).unsqueeze(0)  # (1, 1, T, S)
        if mask is not None:
            keep = torch.cat([mask.new_ones(b, c.num_persistent + tail.shape[1]), mask], dim=1)
            allowed = allowed & keep.bool()[:, None, None, :]
        if c.num_persistent == 0:  # a padded query with no key would give NaN: let it see itself
            past = keys_in.shape[1] - t  # query i is key past + i
            itself = torch.eye(t, dtype=torch.bool, device=h.device)
            allowed = allowed | torch.cat([itself.new_zeros(t, past), itself], dim=1)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=allowed)
        return self.attn_out(y.transpose(1, 2).reshape(b, t, d))

    def forward_with_state(self, x: Tensor, state: MAGState | None = None,
                           mask: Tensor | None = None) -> tuple[Tensor, MAGState]:
        """``(o, new state)`` for ``x`` ``(B, T, d)`` from ``state`` (None: fresh)."""
        c = self.config
        b = x.shape[0]
        state = state if state is not None else self.init_state(b, x)
        if state.memory.batch_size != b:
            raise ConfigError("the batch size changed between calls", field="x",
                              got=(state.memory.batch_size, b),
                              fix="call reset() before a batch of another size")
        h = self.norm_in(x)
        if mask is not None:
            mask = mask.to(h.dtype)
        y = self.attention(h, state.tail, mask)
        m, memory, pending = self._memory_branch(h, state, mask)
        o = self.norm_y(y) * torch.sigmoid(self.norm_m(m))  # the gate: y (x) M(x~)
        tail = torch.cat([state.tail, h], dim=1)
        tail = tail[:, max(0, tail.shape[1] - (c.window - 1)):]
        return x + self.w_o(o), MAGState(memory, tail, pending)

    def _memory_branch(self, h: Tensor, state: MAGState,
                       mask: Tensor | None) -> tuple[Tensor, MemoryState, Tensor]:
        """``(M*(q) per token, memory after the full chunks, inputs of the open chunk)``.

        Every token reads the memory as written up to the chunk before its own.
        """
        c = self.config
        mem, pending = state.memory, state.pending
        pend_mask = h.new_ones(pending.shape[:2])
        mask = mask if mask is not None else h.new_ones(h.shape[:2])
        outs, start = [], 0
        while start < h.shape[1]:
            take = min(c.chunk_size - pending.shape[1], h.shape[1] - start)
            piece, piece_mask = h[:, start:start + take], mask[:, start:start + take]
            outs.append(self.memory.read(mem, piece))  # read before this chunk is written
            pending = torch.cat([pending, piece], dim=1)
            pend_mask = torch.cat([pend_mask, piece_mask], dim=1)
            start += take
            if pending.shape[1] == c.chunk_size:
                mem = self.memory.write(mem, pending, pend_mask)
                pending, pend_mask = pending[:, :0], pend_mask[:, :0]
        return (torch.cat(outs, dim=1) if outs else h.new_zeros(h.shape)), mem, pending

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``o`` for ``x`` ``(B, T, d)``, continuing from and updating :attr:`state`."""
        out, self.state = self.forward_with_state(x, self.state, mask)
        return out

