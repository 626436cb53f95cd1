"""The no-grad rollout of ``ContinuousThoughtMachine``: same numbers, fewer operations.

``ContinuousThoughtMachine.rollout_from`` takes this path when autograd is off and
dropout is inactive. It computes exactly the function of ``model._tick`` (the golden
test holds both to the plain reference formulation) but:

- folds weights once per parameter version (query projection into the attention
  query, attention output into the synapses, NLM temperatures into their weights);
- keeps the pre-activation history in one buffer written one time step per tick;
- runs deep NLMs in cache-sized chunks of neurons (layer 1, GLU, layer 2 per chunk);
- updates both synchronisations with one gather, one multiply and one ``addcmul``;
- runs the output projection once for all ticks.

``model.set_inference_dtype("bfloat16")`` runs the matmuls and the history in
bfloat16 (the CPU's AMX units where present) while the synchronisation sums, the
output projection and the returned states stay float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

from thinkgym.ctm_core.modules import SynapseLinear
from thinkgym.ctm_core.state import KV, StatePack

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine

__all__ = ["HISTORY_CHUNK", "INFERENCE_DTYPES", "NLM_CHUNK_BYTES", "folded_weights", "rollout_fast"]

INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Compute dtypes of the no-grad path, by name (``set_inference_dtype``)."""
_COMPUTE = ("wq", "bq", "w1", "b1", "w1b", "w1bt", "w2t", "b2t", "ws", "bs", "w_out", "b_out",
            "ln_w", "ln_b")

TIME_MAJOR_MIN_BATCH = 4
HISTORY_CHUNK = 16
"""Without returned states, time steps kept beyond the window. Small keeps the window
dense in memory; every ``HISTORY_CHUNK`` ticks the last M steps move to the front."""
NLM_CHUNK_BYTES = 1 << 20
"""Deep NLMs at batch >= TIME_MAJOR_MIN_BATCH run in chunks of neurons whose layer-1
output takes about this many bytes (L2-sized), so that intermediate is read back from
cache instead of memory: fp32 ticks at batch 64 and 128 ran 6-9% faster here than with
the NLMs in one piece (bf16 within noise)."""


def folded_weights(model: ContinuousThoughtMachine,
                   dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Inference-time rewrites of the weights, cached until a parameter changes.

    Folds the query projection into the attention's query weights, the attention
    output projection into the synapse weights, the NLM temperatures into their
    weights; splits the synapse weight into its attention and ``z`` halves (no
    concatenation per tick); gathers both pair sets into one index. Same
    function, different float rounding (a few ulp). Folding runs in the
    parameters' dtype; ``dtype`` then casts the weights the ticks multiply with
    (the decays stay in the parameters' dtype).
    """
    # In-place updates (optimizer steps, load_state_dict) bump a tensor's _version;
    # replacing a parameter changes its id, assigning .data its data_ptr; .to() changes
    # dtype/device. Writes through ``p.data.<op>_()`` are invisible: callers who do that
    # call ``model.clear_fast_cache()`` (train()/eval() also clear it).
    tensors = [*model.parameters(), *model.buffers()]
    key = (dtype, *((id(t), t._version, t.data_ptr(), t.dtype, t.device) for t in tensors))
    cached = model.__dict__.get("_folded_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    c, att, nlm = model.config, model.attention, model.nlm
    r_action, r_out = model._decays()
    # The attention's 1/sqrt(head_dim) scale rides in the folded query weights.
    scale = 1.0 / math.sqrt(c.head_dim)
    f = {
        "r": torch.cat((r_action, r_out)).unsqueeze(1),  # (Sa + So, 1)
        "pairs": torch.cat((model.synch_action_i, model.synch_out_i,
                            model.synch_action_j, model.synch_out_j)),
        "wq": (att.w_q.weight @ model.q_proj.weight) * scale,  # (E, Sa)
        "bq": (att.w_q.weight @ model.q_proj.bias + att.w_q.bias) * scale,
    }
    scaled = nlm.scaled_weights()
    f["w1"], f["b1"] = scaled[0], scaled[1]  # (D, M, O1), (D, 1, O1)
    # Bias as an extra weight row: the history buffer keeps a column of ones after the
    # window, so layer 1 is one bmm with no (D, B, O1) bias broadcast to write first.
    f["w1b"] = torch.cat((f["w1"], f["b1"]), dim=1)  # (D, M + 1, O1)
    # The same, transposed, for the time-major history: (D, O1, M + 1) @ (D, M + 1, B).
    # Outputs then come as (D, O1, B) with the batch contiguous, so both GLUs split
    # contiguous halves and layer 2 needs no transpose: 2.4x faster than (D, B, O1)
    # for the NLMs at batch 64 here.
    f["w1bt"] = f["w1b"].transpose(1, 2).contiguous()
    if nlm.deep:  # layer 2 runs transposed: (2, H) @ (H, B) per neuron
        f["w2t"], f["b2t"] = scaled[2].contiguous(), scaled[3]  # (D, 2, H), (D, 2, 1)
    if c.synapse_depth == 1:
        # The synapse input is [o; z] with o = W_out a + b_out (a: attention heads'
        # output), so its o-half folds through W_out: one matmul fewer per tick.
        # Kept (out, in): x @ W.t() ran ~20% faster than x @ W_t at batch 64 here.
        linear = cast(SynapseLinear, model.synapses).linear
        weight = linear.weight  # (2D, E + D)
        w_o = weight[:, :c.d_input]
        f["ws"] = torch.cat((w_o @ att.w_out.weight, weight[:, c.d_input:]), 1)  # (2D, E + D)
        f["bs"] = w_o @ att.w_out.bias + linear.bias
        f["ln_w"], f["ln_b"] = cast(SynapseLinear, model.synapses).norm.weight, \
            cast(SynapseLinear, model.synapses).norm.bias
    f["w_out"], f["b_out"] = att.w_out.weight, att.w_out.bias
    f = {k: v.detach() for k, v in f.items()}
    if dtype is not None:
        f = {k: v.to(dtype) if k in _COMPUTE else v for k, v in f.items()}
    model.__dict__["_folded_cache"] = (key, f)  # a plain attribute, not module state
    return f


def rollout_fast(model: ContinuousThoughtMachine, state: StatePack, kv: KV, ticks: int,
                 return_states: bool, check_ticks: bool,
                 ) -> tuple[torch.Tensor, list[StatePack] | None, StatePack]:
    """The no-grad rollout: same numbers as ``_tick`` with fewer, fused operations.

    - The history lives in one buffer of M + chunk + 1 time steps; each tick writes
      one step and the NLMs read a window view, so nothing is shifted or
      concatenated; the step after the window holds ones, so layer 1's bias rides
      in the bmm.
    - Synchronisation sums for action and output are one ``(Sa + So, B)`` tensor
      updated with one gather, one multiply and one ``addcmul``.
    - ``S = alpha / sqrt(beta)`` of every tick is written straight into a
      ``(T, Sa + So, B)`` buffer; the output projection runs once at the end.
    - With ``model.inference_dtype`` below the parameters' precision, the history,
      K/V and every per-tick matmul run in it; ``alpha``, ``beta``, ``S`` and the
      logits stay in the parameters' dtype (sums over many ticks need the bits).
    States returned hold views into these buffers (``StatePack.clone`` compacts),
    in the parameters' dtype.
    """
    c, dt = model.config, model.inference_dtype
    f = folded_weights(model, dt if dt != state.dtype else None)
    batch, d, m, sa = state.batch_size, c.d_model, c.memory_length, c.synch_size_action
    heads, head_dim, e = c.heads, c.head_dim, c.d_input
    syn, nlm = model.synapses, model.nlm
    # The synapse LayerNorm is called functionally (no module-call overhead per tick).
    ln = cast(SynapseLinear, syn).norm if c.synapse_depth == 1 else None
    chunk = ticks if return_states else min(ticks, HISTORY_CHUNK)
    # Time steps [0, m) the starting history, then one per tick, then a spare step:
    # every step not yet written holds 1.0 (the bias input of the NLM's layer 1).
    # At batch >= TIME_MAJOR_MIN_BATCH the buffer is (D, L, B): the NLMs read a
    # (D, M + 1, B) window with the batch contiguous (plain strided bmm operands) and a
    # tick writes D runs of B values. At small batch (D, B, L) reads faster.
    time_major = batch >= TIME_MAJOR_MIN_BATCH
    tdim = 1 if time_major else 2
    length = m + chunk + 1
    hist = state.z.new_ones((d, length, batch) if time_major else (d, batch, length), dtype=dt)
    hist.narrow(tdim, 0, m).copy_(state.A.permute(1, 2, 0) if time_major
                                  else state.A.permute(1, 0, 2))

    def steps(start: int, n: int) -> torch.Tensor:  # (D, B, n) view of n time steps
        v = hist.narrow(tdim, start, n)
        return v.transpose(1, 2) if time_major else v

    def nlms(start: int, window: torch.Tensor) -> torch.Tensor:  # -> (D, B) new z
        if not fused_bias:  # layernorm must see the window alone
            h = F.glu(torch.baddbmm(f["b1"], nlm.norm1(window), f["w1"]), dim=-1)
            h = nlm.norm2(h).transpose(1, 2) if nlm.deep else h.transpose(1, 2)
        elif time_major:  # (D, O1, M + 1) @ (D, M + 1, B): GLU halves are contiguous
            return _time_major_nlms(f, chunks, hist.narrow(1, start, m + 1)).reshape(d, batch)
        else:  # [window, 1] @ [W1; b1]
            h = _glu_last(torch.bmm(steps(start, m + 1), f["w1b"])).transpose(1, 2)
        if nlm.deep:  # (D, 2, H) @ (D, H, B) -> GLU over the 2 outputs -> (D, 1, B)
            h = F.glu(torch.baddbmm(f["b2t"], f["w2t"], h), dim=1)
        return h.reshape(d, batch)

    col = m  # next time step to write
    fused_bias = not c.do_layernorm_nlm
    chunks = _nlm_chunks(f, batch, hist.element_size()) if time_major else None
    alpha = torch.cat((state.alpha_action, state.alpha_out), 1).t()  # (Sa + So, B)
    beta = torch.cat((state.beta_action, state.beta_out), 1).t()
    s_all = state.z.new_empty(ticks + 1, alpha.shape[0], batch)
    torch.mul(alpha, beta.rsqrt(), out=s_all[0])
    z_t = state.z.t().to(dt)  # (D, B)

    def rows(x: torch.Tensor) -> torch.Tensor:  # (n, B) -> (B, n) for a matmul operand
        # At batch 1, .t() gives strides BLAS calls ambiguous (and copies); view is exact.
        return x.reshape(1, -1) if batch == 1 else x.t()

    n_pairs, one = alpha.shape[0], state.z.new_ones(())
    records: list[tuple[torch.Tensor, ...]] = []
    # Attention as two batched matmuls over (B * heads) one-row queries: at one query
    # per head this beat scaled_dot_product_attention's CPU kernel several times over.
    n_tokens = kv.k.shape[2]
    k_t = kv.k.to(dt).reshape(batch * heads, n_tokens, head_dim).transpose(1, 2)  # (BH, hd, N)
    v_all = kv.v.to(dt).reshape(batch * heads, n_tokens, head_dim)
    fused_synapse = "ws" in f
    for t in range(ticks):
        q = torch.addmm(f["bq"], rows(s_all[t, :sa]).to(dt), f["wq"].t())  # (B, E), pre-scaled
        scores = torch.bmm(q.view(batch * heads, 1, head_dim), k_t).softmax(-1)
        a = torch.bmm(scores, v_all).view(batch, e)
        keep = return_states or t == ticks - 1
        o = F.linear(a, f["w_out"], f["b_out"]) if keep or not fused_synapse else None
        if fused_synapse:  # one matmul over [a, z]
            pre = torch.addmm(f["bs"], torch.cat((a, rows(z_t)), 1), f["ws"].t())
            pre = F.layer_norm(F.glu(pre, dim=-1), (d,), f["ln_w"], f["ln_b"],
                               ln.eps)  # type: ignore[union-attr]
        else:
            pre = syn(torch.cat((o, rows(z_t)), dim=-1))  # type: ignore[arg-type]
        if col == length - 1:  # full (only without return_states): keep the last M
            hist.narrow(tdim, 0, m).copy_(hist.narrow(tdim, col - m, m).clone())
            hist.narrow(tdim, m, length - m).fill_(1.0)
            col = m
        hist.select(tdim, col).copy_(pre.t())
        window = steps(col - m + 1, m)  # (D, B, M)
        z_t = nlms(col - m + 1, window)
        col += 1
        g = z_t.index_select(0, f["pairs"]).to(alpha.dtype)  # (2 (Sa + So), B)
        alpha = torch.addcmul(g[:n_pairs] * g[n_pairs:], f["r"], alpha)
        beta = torch.addcmul(one, f["r"], beta)
        torch.mul(alpha, beta.rsqrt(), out=s_all[t + 1])
        if keep:
            records.append((z_t, window, alpha, beta, cast(torch.Tensor, o)))  # set when keep
        if check_ticks:  # finite state and weights imply finite logits
            o_t = o if o is not None else F.linear(a, f["w_out"], f["b_out"])
            _state_from(model, (z_t, window, alpha, beta, o_t), state.tick + t + 1).check_finite()
    out_w, out_b = model.output_proj.weight, model.output_proj.bias
    logits = torch.matmul(out_w, s_all[1:, sa:]) + out_b[:, None]  # (T, out_dims, B)
    logits = logits.permute(2, 1, 0).contiguous()  # (B, out_dims, T)
    states = ([_state_from(model, r, state.tick + i + 1) for i, r in enumerate(records)]
              if return_states else None)
    final = states[-1] if states else _state_from(model, records[-1], state.tick + ticks)
    return logits, states, final


def _nlm_chunks(f: dict[str, torch.Tensor], batch: int, itemsize: int,
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]] | None:
    """Deep NLM weights cut in neuron chunks of about ``NLM_CHUNK_BYTES`` of layer-1 output.

    Returns the ``(D, 2, B)`` layer-2 buffer and, per chunk, ``(w1bt, w2t, b2t, out)``
    with ``out`` its rows of that buffer; None for shallow NLMs.
    """
    if "w2t" not in f:
        return None
    d, o1 = f["w1bt"].shape[:2]
    n = max(1, NLM_CHUNK_BYTES // (o1 * batch * itemsize))
    layer2 = f["w2t"].new_empty(d, 2, batch)
    return layer2, [(f["w1bt"][s:s + n], f["w2t"][s:s + n], f["b2t"][s:s + n],
                     layer2[s:s + n]) for s in range(0, d, n)]


def _time_major_nlms(f: dict[str, torch.Tensor],
                     chunks: tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]] | None,
                     window: torch.Tensor) -> torch.Tensor:
    """NLMs over a time-major ``(D, M + 1, B)`` window (bias row included) -> ``(D, 1, B)``.

    Deep NLMs run chunk by chunk (:func:`_nlm_chunks`): layer 1, its GLU and layer 2
    of one chunk, so the ``(n, 2H, B)`` layer-1 output is read back from cache.
    """
    if chunks is None:  # shallow: one layer, GLU over its 2 outputs
        return F.glu(torch.matmul(f["w1bt"], window), 1)
    layer2, parts = chunks
    start = 0
    for w1bt, w2t, b2t, out in parts:
        rows = window.narrow(0, start, w1bt.shape[0])
        torch.baddbmm(b2t, w2t, F.glu(torch.matmul(w1bt, rows), 1), out=out)
        start += w1bt.shape[0]
    return F.glu(layer2, dim=1)


def _glu_last(x: torch.Tensor) -> torch.Tensor:
    """``F.glu(x, -1)`` for short rows: one sigmoid over all of ``x``, then one multiply.

    On (D, B, 2H) with 2H = 32, F.glu's kernel runs row by row (3x slower here at
    batch 1); the sigmoid of the unused half costs less than that.
    """
    half = x.shape[-1] // 2
    return x[..., :half] * torch.sigmoid(x)[..., half:]


def _state_from(model: ContinuousThoughtMachine, record: tuple[torch.Tensor, ...],
                tick: int) -> StatePack:
    z_t, window, alpha, beta, o = record
    sa, dtype = model.config.synch_size_action, alpha.dtype  # the parameters' dtype
    return StatePack(z=z_t.t().to(dtype), A=window.permute(1, 0, 2).to(dtype),
                     alpha_action=alpha[:sa].t(), beta_action=beta[:sa].t(),
                     alpha_out=alpha[sa:].t(), beta_out=beta[sa:].t(), o=o.to(dtype), tick=tick)
