"""Claims (issue 17): at the reference parity configuration on this CPU, 2 threads,

- fp32, batch 64: a tick costs <= 2x the same-run floor of its two dominant ops;
- fp32, batch 1: a tick costs <= 1.5x its same-run floor;
- bf16 (``model.set_inference_dtype("bfloat16")``), batch 64: >= 2.5x faster than fp32;
- bf16 leaves the bundled checkpoints' held-out accuracy (parity16, digits16, maze9)
  within 0.5 points of fp32.

Configuration: the reference repository's parity setup - d_model 1024, d_input 512,
8 heads, synchronisation 32/32 'random', memory 25, deep NLMs with 16 hidden,
synapse depth 1, 64 parity bits (prediction_shape (64, 2)), 64 input tokens.

What is timed:

- ``ms_per_tick_b64`` / ``ms_per_tick_b1`` (fp32) and ``ms_per_tick_b64_bf16`` /
  ``ms_per_tick_b1_bf16``: ``model.rollout_from(state, kv, N)`` under ``torch.no_grad()``
  in eval mode, divided by N; fp32 and bf16 alternate run by run. K/V are computed
  once per input beforehand (per input, not per tick; ``forward_ms_b64_75_ticks``
  reports a whole fp32 forward including the backbone and K/V).
- Floors (:func:`op_floor`): the synapse matmul and the NLMs' layer-1 batched matmul
  of that batch and dtype, each alone with hot caches, timed in the same rounds as
  the ticks. ``floor_ratio_*`` = tick / floor (min over rounds of each).
- ``bf16_speedup_b64``: fp32 ms / bf16 ms at batch 64 (min of each; the median
  ratio beside it).
- ``bf16_accuracy_delta``: the largest |bf16 - fp32| accuracy (at the most certain
  tick, in points) over the bundled checkpoints' held-out sets.
- ``train_step_s_b64``: one full fp32 training step at batch 64 with 75 ticks.

Result (``results/ctm_tick.json``, ``--wait-idle 120``, 2 threads; min / median): fp32
b64 5.30 / 6.13 ms = 1.83x / 1.84x its floor (target 2x: met; before the NLMs ran in
cache-sized neuron chunks, 2.19x and 2.23x in two runs); bf16 b64 2.60 / 2.72 ms,
2.04x / 2.25x faster than fp32 (target 2.5x: missed; 2.32x / 2.31x in the run before);
fp32 b1 0.33 / 0.41 ms = 1.94x / 2.25x its floor (target 1.5x: missed; 1.97x to 2.31x
over this session's four runs); bf16 accuracy within 0.004 points (met). Why the
misses (``op_breakdown_b64``: each op alone, hot caches, same run): in bf16 the
matmuls get ~4x faster but the rest does not (the NLM GLU is slower in bf16 than in
fp32, attention over 512 one-row queries is dispatch-bound): the bf16 op sum is 1.41
ms of which 54% matmul, against 3.78 ms and 76% in fp32, and running the ops in
sequence adds 1.2 ms in bf16 (cache misses and per-op overhead do not shrink with the
dtype), so the speed-up stays near 2-2.3x. At batch 1 the tick is a chain of ~20 small
ops around GEMVs over 17 MB of weights: the floor keeps its two GEMVs hot in L3 and
pays no dispatch, while the tick pays ~5-10 us per op; an experiment compiling the
whole tick with ``torch.compile`` (inductor, not shipped: 13 s compile, needs a C++
compiler) reached 1.6x the floor, so fused kernels alone would not reach 1.5x either.

The machine is shared and noisy: every figure is repeated; the headline value is the
minimum (closest to the uncontended cost) and the median is reported beside it, all
from this one run, with the load average before and after.

    python benchmarks/ctm_tick.py --wait-idle 120 --json benchmarks/results/ctm_tick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime

import torch
import torch.nn.functional as F
from torch import nn

from thinkgym.ctm_core import ContinuousThoughtMachine, CTMConfig, ctm_loss
from thinkgym.ctm_core.fast import INFERENCE_DTYPES, folded_weights

TARGETS = {"floor_ratio_b64": ("<=", 2.0), "floor_ratio_b1": ("<=", 1.5),
           "bf16_speedup_b64": (">=", 2.5), "bf16_accuracy_delta": ("<=", 0.5)}
ACCURACY_CHECKPOINTS = ("parity16", "digits16", "maze9")
CONFIG = dict(d_model=1024, d_input=512, heads=8, n_synch_out=32, n_synch_action=32,
              neuron_select_type="random", memory_length=25, deep_nlms=True,
              memory_hidden_dims=16, synapse_depth=1, prediction_shape=(64, 2),
              backbone_dim=512, iterations=75, dropout=0.0)
BITS = 64


class ParityTokens(nn.Module):
    """Bits (B, 64) in {0, 1} -> tokens (B, 64, 512): bit embedding + position embedding."""

    def __init__(self, width: int, length: int) -> None:
        super().__init__()
        self.bit = nn.Embedding(2, width)
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        return self.bit(bits.long()) + self.position


def build_model() -> ContinuousThoughtMachine:
    torch.manual_seed(0)
    cfg = CTMConfig(**CONFIG)
    return ContinuousThoughtMachine(cfg, backbone=ParityTokens(cfg.backbone_dim, BITS))


def bits(batch: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (batch, BITS), generator=torch.Generator().manual_seed(seed))


def cpu_idle_fraction(interval: float = 0.5) -> float:
    """Fraction of all CPUs idle over ``interval`` seconds (Linux /proc/stat; 1.0 elsewhere)."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


class QuietWaiter:
    """Before each timed run, wait (up to a total budget) for the machine to be mostly idle.

    The machine is shared; a run that starts while other jobs hold the cores measures
    them, not us. Waiting is bounded, and the idle fraction seen before every run is
    recorded so the figures can be judged.
    """

    def __init__(self, budget_s: float, threshold: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.threshold = threshold
        self.seen: list[float] = []

    def __call__(self) -> None:
        idle = cpu_idle_fraction()
        while idle < self.threshold and time.monotonic() < self.deadline:
            idle = cpu_idle_fraction()
        self.seen.append(round(idle, 2))


def summary(values: list[float]) -> dict[str, float | list[float]]:
    return {"min": min(values), "median": statistics.median(values),
            "runs": [round(v, 4) for v in values]}


def time_ticks(model: ContinuousThoughtMachine, batch: int, ticks: int, repeats: int,
               wait: QuietWaiter, dtypes: tuple[str, ...] = ("float32", "bfloat16"),
               floor_repeats: int = 3) -> dict[str, dict[str, dict]]:
    """ms per tick of a no-grad rollout in each dtype, and the same-run op floors.

    Every repeat is one round: a rollout of ``ticks`` ticks in each dtype, then the
    floor of each dtype (:func:`op_floor`), so ticks and floors share the machine's
    state of the moment; ratios come from the same rounds.
    """
    model.eval()
    out: dict[str, dict[str, list[float]]] = {dt: {"tick": [], "floor": []} for dt in dtypes}
    floors: dict[str, dict] = {}
    with torch.no_grad():
        kv = model.compute_kv(bits(batch, 1))
        state = model.init_state(kv)
        for dt in dtypes:  # warm-up (allocator, folded weights per dtype)
            model.set_inference_dtype(dt).rollout_from(state, kv, ticks=min(ticks, 10))
        for _ in range(repeats):
            for dt in dtypes:
                model.set_inference_dtype(dt)
                wait()
                start = time.perf_counter()
                model.rollout_from(state, kv, ticks=ticks)
                out[dt]["tick"].append((time.perf_counter() - start) / ticks * 1e3)
            for dt in dtypes:
                floors[dt] = op_floor(model.config, batch, INFERENCE_DTYPES[dt], floor_repeats)
                out[dt]["floor"].append(floors[dt]["floor_ms"])
    model.set_inference_dtype(None)
    return {dt: {"tick": summary(v["tick"]), "floor": summary(v["floor"]),
                 "floor_ops_last_round": floors[dt]} for dt, v in out.items()}


def reference_style_rollout(model: ContinuousThoughtMachine, tokens: torch.Tensor,
                            ticks: int) -> torch.Tensor:
    """The reference repository's per-tick formulation, with this model's weights.

    Written here to time the reference's *cost structure* side by side with ours on the
    same (noisy) machine: ``nn.MultiheadAttention`` projecting keys/values again every
    tick, a per-neuron ``einsum`` NLM with ``(M, H, D)`` weights, the history shifted
    by concatenation, dense outer-product synchronisation, certainty every tick.
    """
    c, att, nlm = model.config, model.attention, model.nlm
    mha = nn.MultiheadAttention(c.d_input, c.heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([att.w_q.weight, att.w_k.weight, att.w_v.weight]))
        mha.in_proj_bias.copy_(torch.cat([att.w_q.bias, att.w_k.bias, att.w_v.bias]))
        mha.out_proj.weight.copy_(att.w_out.weight)
        mha.out_proj.bias.copy_(att.w_out.bias)
    w1, w2 = nlm.w1.permute(1, 2, 0).contiguous(), nlm.w2.permute(1, 2, 0).contiguous()
    # The model stores the triangle's pairs; the selected neurons sit on its diagonal.
    rows_a, cols_a = torch.triu_indices(c.n_synch_action, c.n_synch_action)
    rows_o, cols_o = torch.triu_indices(c.n_synch_out, c.n_synch_out)
    diag_a, diag_o = rows_a == cols_a, rows_o == cols_o
    left_a, right_a = model.synch_action_i[diag_a], model.synch_action_j[diag_a]
    left_o, right_o = model.synch_out_i[diag_o], model.synch_out_j[diag_o]
    r_a, r_o = model._decays()

    def pairs(z: torch.Tensor, left: torch.Tensor, right: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor) -> torch.Tensor:
        outer = z[:, left].unsqueeze(2) * z[:, right].unsqueeze(1)
        return outer[:, rows, cols]

    batch = tokens.shape[0]
    kv = model.kv_norm(model.kv_proj(tokens))
    z = model.start_z.unsqueeze(0).expand(batch, -1)
    history = model.start_history.unsqueeze(0).expand(batch, -1, -1)
    alpha_o, beta_o = pairs(z, left_o, right_o, rows_o, cols_o), 1.0
    alpha_a, beta_a = None, None
    outs = []
    for _ in range(ticks):
        pa = pairs(z, left_a, right_a, rows_a, cols_a)
        alpha_a, beta_a = (pa, 1.0) if alpha_a is None else (r_a * alpha_a + pa, r_a * beta_a + 1)
        q = model.q_proj(alpha_a / torch.sqrt(torch.as_tensor(beta_a))).unsqueeze(1)
        o = mha(q, kv, kv, need_weights=False)[0].squeeze(1)
        pre = model.synapses(torch.cat((o, z), dim=-1))
        history = torch.cat((history[:, :, 1:], pre.unsqueeze(-1)), dim=-1)
        h = F.glu((torch.einsum("BDM,MHD->BDH", history, w1) + nlm.b1) / nlm.t1, dim=-1)
        z = F.glu((torch.einsum("BDM,MHD->BDH", h, w2) + nlm.b2) / nlm.t2, dim=-1).squeeze(-1)
        alpha_o = r_o * alpha_o + pairs(z, left_o, right_o, rows_o, cols_o)
        beta_o = r_o * beta_o + 1
        logits = model.output_proj(alpha_o / torch.sqrt(beta_o))
        outs.append(model.certainty(logits))
    return torch.stack(outs, -1)


def time_side_by_side(model: ContinuousThoughtMachine, batch: int, ticks: int,
                      repeats: int) -> dict[str, dict[str, float | list[float]]]:
    """ms per tick of ours and of the reference formulation, alternating run by run."""
    model.eval()
    ours, ref = [], []
    with torch.no_grad():
        x = bits(batch, 1)
        tokens = model.backbone(x)
        kv = model.compute_kv(x)
        state = model.init_state(kv)
        reference_style_rollout(model, tokens, 2)
        model.rollout_from(state, kv, ticks=2)
        for _ in range(repeats):
            start = time.perf_counter()
            reference_style_rollout(model, tokens, ticks)
            ref.append((time.perf_counter() - start) / ticks * 1e3)
            start = time.perf_counter()
            model.rollout_from(state, kv, ticks=ticks)
            ours.append((time.perf_counter() - start) / ticks * 1e3)
    return {"ours": summary(ours), "reference_formulation": summary(ref)}


def cpu_ticks_one_thread(model: ContinuousThoughtMachine, batch: int, ticks: int,
                         repeats: int) -> dict[str, float | list[float]]:
    """Supplement: CPU ms per tick on ONE thread (process time, not wall time).

    On a busy shared machine, wall time of a 2-thread run mostly measures waiting for
    cores (and OpenMP barriers spinning against other jobs); process CPU time of a
    1-thread run is far less sensitive to that (cache and memory contention remain).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    model.eval()
    try:
        with torch.no_grad():
            kv = model.compute_kv(bits(batch, 1))
            state = model.init_state(kv)
            model.rollout_from(state, kv, ticks=min(ticks, 10))
            runs = []
            for _ in range(repeats):
                start = time.process_time()
                model.rollout_from(state, kv, ticks=ticks)
                runs.append((time.process_time() - start) / ticks * 1e3)
    finally:
        torch.set_num_threads(previous)
    return summary(runs)


def time_forward(model: ContinuousThoughtMachine, batch: int, repeats: int,
                 wait: QuietWaiter) -> dict[str, float | list[float]]:
    """ms for a whole forward (backbone, K/V and 75 ticks)."""
    model.eval()
    x = bits(batch, 2)
    with torch.no_grad():
        model(x)
        runs = []
        for _ in range(repeats):
            wait()
            start = time.perf_counter()
            model(x)
            runs.append((time.perf_counter() - start) * 1e3)
    return summary(runs)


def time_train_step(model: ContinuousThoughtMachine, batch: int, repeats: int,
                    wait: QuietWaiter, clock: str = "wall") -> dict[str, float | list[float]]:
    """Seconds per training step (75 ticks, batch ``batch``), after one warm-up step.

    ``clock="cpu"`` measures process CPU time instead of wall time (the 1-thread supplement).
    """
    now = time.perf_counter if clock == "wall" else time.process_time
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    runs = []
    for i in range(repeats + 1):
        x = bits(batch, 10 + i)
        targets = torch.cumsum(x, dim=1) % 2  # cumulative parity, (B, 64)
        if i:
            wait()
        start = now()
        out = model(x)  # logits (B, 128, T)
        logits = out.logits.view(batch, BITS, 2, -1).transpose(1, 2)  # (B, classes, 64, T)
        per_tick = F.cross_entropy(logits, targets.unsqueeze(-1).expand(-1, -1, out.ticks),
                                   reduction="none").mean(1)  # (B, T)
        loss = ctm_loss(per_tick, out.certainty).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i:  # the first step pays for allocator and AdamW state set-up
            runs.append(now() - start)
    return summary(runs)


def _best_ms(fn: object, n: int, repeats: int) -> float:
    fn()  # type: ignore[operator]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - start) / n * 1e3)
    return min(runs)


def op_floor(config: CTMConfig, batch: int, dtype: torch.dtype, repeats: int) -> dict:
    """What this machine allows for the two dominant operations of a tick, measured alone.

    The synapse matmul ``(B, E + D) @ (E + D, 2D)`` and the NLMs' layer-1 batched matmul
    over the window (per neuron ``(M + 1) x 2H`` weights), in ``dtype``, each timed in
    isolation with hot caches on the benchmark's threads; the NLM matmul in both
    layouts (``(D, B, M+1) @ (D, M+1, 2H)`` and ``(D, 2H, M+1) @ (D, M+1, B)``) and the
    faster one kept. Their sum is a floor for a tick of our formulation: everything
    else in the tick (attention, GLUs, synchronisation) only adds to it. At batch 1
    the tick's weights (17 MB fp32) stay in the 32 MB L3 between ticks, as they do
    here, so this is the honest floor there too (``stream_floor_b1_ms`` is the
    DRAM-bound figure, for reference).
    """
    c = config
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    w_syn = rand(2 * c.d_model, c.d_input + c.d_model)
    x = rand(batch, c.d_input + c.d_model)
    hist_a = rand(c.d_model, batch, c.memory_length + 1)
    w1_a = rand(c.d_model, c.memory_length + 1, 2 * c.memory_hidden_dims)
    w1_b = rand(c.d_model, 2 * c.memory_hidden_dims, c.memory_length + 1)
    hist_b = rand(c.d_model, c.memory_length + 1, batch)
    n = 20 if batch > 1 else 200
    syn_ms = _best_ms(lambda: torch.mm(x, w_syn.t()), n, repeats)
    nlm_ms = min(_best_ms(lambda: torch.bmm(hist_a, w1_a), n, repeats),
                 _best_ms(lambda: torch.bmm(w1_b, hist_b), n, repeats))
    flop = 2 * batch * w_syn.numel(), 2 * c.d_model * batch * w1_a.shape[1] * w1_a.shape[2]
    return {"synapse_matmul_ms": round(syn_ms, 4),
            "synapse_gflops": round(flop[0] / syn_ms / 1e6, 1),
            "nlm_bmm_ms": round(nlm_ms, 4), "nlm_gflops": round(flop[1] / nlm_ms / 1e6, 1),
            "floor_ms": round(syn_ms + nlm_ms, 4)}


def op_breakdown(config: CTMConfig, batch: int, dtype: torch.dtype, repeats: int) -> dict:
    """Every op of a fast-path tick timed alone (hot caches), in ``dtype``, in ms.

    The same shapes and layouts as :func:`thinkgym.ctm_core.fast.rollout_fast` (fused
    synapse, time-major NLM window, sync sums in fp32). The tick's time minus this sum is
    what running them in sequence costs beyond each alone (caches, the working set).
    """
    c = config
    d, e, m, heads = c.d_model, c.d_input, c.memory_length, c.heads
    hd, h2, n_tok = e // heads, 2 * c.memory_hidden_dims, 64
    sa = c.n_synch_action * (c.n_synch_action + 1) // 2
    n_sync = sa + c.n_synch_out * (c.n_synch_out + 1) // 2
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int, dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dt)

    wq, bq, s_act = rand(e, sa), rand(e), rand(sa, batch, dt=torch.float32)
    k_t, v = rand(batch * heads, hd, n_tok), rand(batch * heads, n_tok, hd)
    ws, bs, a, z = rand(2 * d, e + d), rand(2 * d), rand(batch, e), rand(d, batch)
    ln_w, ln_b = rand(d), rand(d)
    hist, w1bt = rand(d, m + 17, batch), rand(d, h2, m + 1)
    w2t, b2t = rand(d, 2, h2 // 2), rand(d, 2, 1)
    pairs = torch.randint(0, d, (2 * n_sync,), generator=gen)
    decay = torch.rand(n_sync, 1, generator=gen)
    alpha, beta = torch.randn(n_sync, batch), torch.rand(n_sync, batch) + 1
    s_out, one = torch.empty(n_sync, batch), torch.ones(())
    q = torch.addmm(bq, s_act.t().to(dtype), wq.t())
    pre = torch.addmm(bs, torch.cat((a, z.t()), 1), ws.t())
    normed = F.layer_norm(F.glu(pre, -1), (d,), ln_w, ln_b)
    h = torch.matmul(w1bt, hist.narrow(1, 1, m + 1))
    h1 = F.glu(h, 1)
    z_new = F.glu(torch.baddbmm(b2t, w2t, h1), 1).reshape(d, batch)

    def sync() -> None:
        g = z_new.index_select(0, pairs).to(torch.float32)
        al = torch.addcmul(g[:n_sync] * g[n_sync:], decay, alpha)
        be = torch.addcmul(one, decay, beta)
        torch.mul(al, be.rsqrt(), out=s_out)

    n = 20 if batch > 1 else 200
    ops = {
        "query": lambda: torch.addmm(bq, s_act.t().to(dtype), wq.t()),
        "attention": lambda: torch.bmm(torch.bmm(q.view(batch * heads, 1, hd), k_t)
                                       .softmax(-1), v),
        "synapse_matmul": lambda: torch.addmm(bs, torch.cat((a, z.t()), 1), ws.t()),
        "synapse_glu_layernorm": lambda: F.layer_norm(F.glu(pre, -1), (d,), ln_w, ln_b),
        "history_write": lambda: hist.select(1, m).copy_(normed.t()),
        "nlm_matmul": lambda: torch.matmul(w1bt, hist.narrow(1, 1, m + 1)),
        "nlm_glu": lambda: F.glu(h, 1),
        "nlm_layer2": lambda: F.glu(torch.baddbmm(b2t, w2t, h1), 1),
        "sync": sync,
    }
    out = {name: round(_best_ms(fn, n, repeats), 4) for name, fn in ops.items()}
    total = sum(out.values())
    out["sum"] = round(total, 4)
    out["matmul_share"] = round((out["synapse_matmul"] + out["nlm_matmul"]) / total, 3)
    return out


def stream_floor_b1(model: ContinuousThoughtMachine, repeats: int) -> dict:
    """Reference only: the tick's fp32 weight bytes over DRAM bandwidth (a GEMV cycling
    over four ~12 MB matrices, more than the L3 holds)."""
    c = model.config
    gen = torch.Generator().manual_seed(0)
    folded = folded_weights(model)
    weights_mb = sum(t.numel() * t.element_size() for k, t in folded.items()
                     if k in ("wq", "w1bt", "w2t", "ws")) / 1e6
    copies = [torch.randn(2 * c.d_model, c.d_input + c.d_model, generator=gen)
              for _ in range(4)]
    vec = torch.randn(copies[0].shape[1], generator=gen)
    state = {"i": 0}

    def stream() -> None:
        state["i"] = (state["i"] + 1) % len(copies)
        torch.mv(copies[state["i"]], vec)

    stream_ms = _best_ms(stream, 40, repeats)
    gbps = copies[0].numel() * 4 / 1e6 / stream_ms  # MB per ms = GB/s
    return {"weight_mb_per_tick": round(weights_mb, 2), "dram_gb_per_s": round(gbps, 1),
            "stream_floor_b1_ms": round(weights_mb / gbps, 3)}


def accuracy_by_dtype(samples: int) -> dict:
    """Held-out accuracy (most certain tick) of each bundled checkpoint in fp32 and bf16."""
    from thinkgym.ctm_core.evaluate import evaluate_checkpoint

    out = {}
    for name in ACCURACY_CHECKPOINTS:
        row: dict[str, float | int] = {}
        for dt in ("float32", "bfloat16"):
            result = evaluate_checkpoint(name, samples=samples, progress=False, dtype=dt)
            row[dt] = round(result.accuracy_most_certain, 5)
            row[f"{dt}_seconds"] = round(result.seconds, 1)
            row["samples"] = result.samples
        row["delta_points"] = round(abs(row["bfloat16"] - row["float32"]) * 100, 3)
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="rounds per tick figure")
    parser.add_argument("--ticks-b64", type=int, default=40, help="ticks per batch-64 run")
    parser.add_argument("--ticks-b1", type=int, default=300, help="ticks per batch-1 run")
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--accuracy-samples", type=int, default=10000,
                        help="held-out items per checkpoint for bf16_accuracy_delta "
                             "(capped by each test split; 0 skips)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="total time to spend waiting for quiet moments before runs")
    parser.add_argument("--idle-threshold", type=float, default=0.8,
                        help="CPU idle fraction that counts as quiet")
    parser.add_argument("--also-omp-passive", action="store_true",
                        help="repeat the tick figures in a child process with "
                             "OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning "
                             "at barriers; on a machine busy with other jobs spinning threads "
                             "fight them) and record them beside the standard run")
    parser.add_argument("--compare-reference", action="store_true",
                        help="also time the reference formulation at batch 64, alternating "
                             "with ours, and report the speed-up")
    parser.add_argument("--compare-ticks", type=int, default=10)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = build_model()
    load = {"before": os.getloadavg()}
    waits = {k: QuietWaiter(args.wait_idle / 4, args.idle_threshold)
             for k in ("b64", "b1", "forward", "train")}
    ticks = {"b64": time_ticks(model, 64, args.ticks_b64, args.repeats, waits["b64"]),
             "b1": time_ticks(model, 1, args.ticks_b1, args.repeats, waits["b1"])}
    forward = time_forward(model, 64, max(2, args.repeats // 2), waits["forward"])
    train = (None if args.skip_train
             else time_train_step(model, 64, args.train_repeats, waits["train"]))
    cpu1 = {"b64": cpu_ticks_one_thread(model, 64, args.ticks_b64, args.repeats),
            "b1": cpu_ticks_one_thread(model, 1, args.ticks_b1, args.repeats)}
    if not args.skip_train:
        torch.set_num_threads(1)
        cpu1["train_step_s_b64"] = time_train_step(build_model(), 64, 1, QuietWaiter(0, 1.0),
                                                   clock="cpu")
        torch.set_num_threads(args.threads)
    stream = stream_floor_b1(model, args.repeats)
    breakdown = {dt: op_breakdown(model.config, 64, INFERENCE_DTYPES[dt], args.repeats)
                 for dt in ("float32", "bfloat16")}
    accuracy = accuracy_by_dtype(args.accuracy_samples) if args.accuracy_samples else None
    load["after"] = os.getloadavg()

    def fig(batch: str, dt: str, part: str, stat: str = "min") -> float:
        return float(ticks[batch][dt][part][stat])  # type: ignore[arg-type]

    result: dict = {}
    for batch in ("b64", "b1"):
        for dt, suffix in (("float32", ""), ("bfloat16", "_bf16")):
            result[f"ms_per_tick_{batch}{suffix}"] = round(fig(batch, dt, "tick"), 3)
            result[f"floor_ms_{batch}{suffix}"] = round(fig(batch, dt, "floor"), 3)
            result[f"floor_ratio_{batch}{suffix}"] = round(
                fig(batch, dt, "tick") / fig(batch, dt, "floor"), 2)
    result["bf16_speedup_b64"] = round(fig("b64", "float32", "tick")
                                       / fig("b64", "bfloat16", "tick"), 2)
    result["bf16_speedup_b1"] = round(fig("b1", "float32", "tick")
                                      / fig("b1", "bfloat16", "tick"), 2)
    result["bf16_accuracy_delta"] = (None if accuracy is None else
                                     max(row["delta_points"] for row in accuracy.values()))
    result["train_step_s_b64"] = None if train is None else round(train["min"], 3)
    med = {}
    for batch in ("b64", "b1"):
        for dt, suffix in (("float32", ""), ("bfloat16", "_bf16")):
            med[f"ms_per_tick_{batch}{suffix}"] = round(fig(batch, dt, "tick", "median"), 3)
            med[f"floor_ratio_{batch}{suffix}"] = round(
                fig(batch, dt, "tick", "median") / fig(batch, dt, "floor", "median"), 2)
    med["bf16_speedup_b64"] = round(fig("b64", "float32", "tick", "median")
                                    / fig("b64", "bfloat16", "tick", "median"), 2)
    med["train_step_s_b64"] = None if train is None else round(train["median"], 3)
    result["median"] = med
    result["runs"] = {f"{batch}_{dt}": ticks[batch][dt] for batch in ticks
                      for dt in ticks[batch]}
    result["runs"]["forward_ms_b64_75_ticks"] = forward["runs"]
    result["runs"]["train_step_s_b64"] = None if train is None else train["runs"]
    result["forward_ms_b64_75_ticks"] = round(forward["min"], 2)
    result["bf16_accuracy"] = accuracy
    result["supplement_cpu_ms_per_tick_1_thread"] = {
        "note": "fp32 process CPU time on 1 thread, not the claim (which is wall time on "
                "2 threads); less sensitive to other jobs on the machine",
        **{b: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in f.items()}
           for b, f in cpu1.items()},
    }
    result["stream_floor_b1_reference"] = stream
    result["op_breakdown_b64"] = {
        "note": "each op of a tick alone with hot caches (ms, this run's threads); the tick "
                "minus their sum is what running them in sequence costs beyond each alone",
        **breakdown}
    checks = {k: v for k, v in result.items() if k in TARGETS and v is not None}
    result["targets"] = {k: f"{op} {bound}" for k, (op, bound) in TARGETS.items()}
    result["meets_targets"] = {k: (v <= TARGETS[k][1] if TARGETS[k][0] == "<=" else
                                   v >= TARGETS[k][1]) for k, v in checks.items()}
    result.update({
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "<unset>"),
        "headline": "min over rounds; median beside it; ratios from this run",
        "config": {**CONFIG, "prediction_shape": list(CONFIG["prediction_shape"]),
                   "input_tokens": BITS},
        "ticks_per_run": {"b64": args.ticks_b64, "b1": args.ticks_b1, "train": 75},
        "repeats": {"ticks": args.repeats, "train": args.train_repeats},
        "threads": args.threads,
        "loadavg_1_5_15": load,
        "cpu_idle_before_each_run": {k: w.seen for k, w in waits.items()},
        "wait_idle": {"budget_s": args.wait_idle, "threshold": args.idle_threshold},
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
    })
    if args.compare_reference:
        side = time_side_by_side(model, 64, args.compare_ticks, args.repeats)
        result["side_by_side_b64"] = {
            "note": "ms per tick, ours and the reference formulation (reference_style_rollout) "
                    "alternating run by run in this process; the ratio is robust to load",
            **side,
            "speedup_min": round(side["reference_formulation"]["min"] / side["ours"]["min"], 2),
            "speedup_median": round(side["reference_formulation"]["median"]
                                    / side["ours"]["median"], 2),
        }
    if args.also_omp_passive:
        result["omp_passive_run"] = passive_child_run(args)
    print_table(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
    return result


def passive_child_run(args: argparse.Namespace) -> dict:
    """The tick figures again, in a fresh process with OMP_WAIT_POLICY=PASSIVE."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "passive.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--skip-train", "--json", out,
               "--accuracy-samples", "0",
               "--threads", str(args.threads), "--repeats", str(args.repeats),
               "--ticks-b64", str(args.ticks_b64), "--ticks-b1", str(args.ticks_b1),
               "--wait-idle", str(args.wait_idle), "--idle-threshold", str(args.idle_threshold)]
        subprocess.run(cmd, check=True, capture_output=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        with open(out) as fh:
            child = json.load(fh)
    keep = ("ms_per_tick_b64", "ms_per_tick_b1", "median", "runs", "omp_wait_policy",
            "loadavg_1_5_15", "cpu_idle_before_each_run")
    return {k: child[k] for k in keep}


def print_table(r: dict) -> None:
    med = r["median"]
    print(f"{'measure':40s} {'min':>9s} {'median':>9s} {'floor':>8s} {'ratio':>6s} {'target':>8s}")
    for batch, label in (("b64", "batch 64"), ("b1", "batch 1")):
        for suffix, dt in (("", "fp32"), ("_bf16", "bf16")):
            key = f"floor_ratio_{batch}{suffix}"
            target = TARGETS.get(key)
            print(f"{'ms / tick, ' + label + ', ' + dt:40s} {r['ms_per_tick_' + batch + suffix]:>9}"
                  f" {med['ms_per_tick_' + batch + suffix]:>9} {r['floor_ms_' + batch + suffix]:>8}"
                  f" {r[key]:>6} {'' if target is None else ' '.join(map(str, target)):>8}")
    print(f"{'bf16 speed-up, batch 64':40s} {r['bf16_speedup_b64']:>9} "
          f"{med['bf16_speedup_b64']:>9} {'':>8s} {'':>6s} {'>= 2.5':>8s}")
    print(f"{'bf16 speed-up, batch 1':40s} {r['bf16_speedup_b1']:>9}")
    if r.get("bf16_accuracy"):
        for name, row in r["bf16_accuracy"].items():
            print(f"{'accuracy ' + name + ' fp32 / bf16':40s} {row['float32']:>9} "
                  f"{row['bfloat16']:>9}  ({row['samples']} held-out, "
                  f"delta {row['delta_points']} points)")
        print(f"{'bf16 accuracy delta (points, max)':40s} {r['bf16_accuracy_delta']:>9} "
              f"{'':>9s} {'':>8s} {'':>6s} {'<= 0.5':>8s}")
    print(f"{'forward ms, batch 64, 75 ticks (fp32)':40s} {r['forward_ms_b64_75_ticks']:>9}")
    print(f"{'train step s, batch 64, 75 ticks':40s} {r['train_step_s_b64']!s:>9} "
          f"{med['train_step_s_b64']!s:>9}")
    sup = r["supplement_cpu_ms_per_tick_1_thread"]
    for batch in ("b64", "b1"):
        print(f"{'(supplement) fp32 CPU ms / tick, 1 thr, ' + batch:40s} "
              f"{sup[batch]['min']!s:>9} {sup[batch]['median']!s:>9}")
    if "omp_passive_run" in r:
        p = r["omp_passive_run"]
        for batch, key in (("64", "ms_per_tick_b64"), ("1", "ms_per_tick_b1")):
            print(f"{'(OMP passive) ms / tick, batch ' + batch:40s} {p[key]!s:>9} "
                  f"{p['median'][key]!s:>9}")
    if "side_by_side_b64" in r:
        side = r["side_by_side_b64"]
        for name in ("ours", "reference_formulation"):
            print(f"{'(side by side) ms / tick b64, ' + name[:9]:40s} {side[name]['min']:>9.3f} "
                  f"{side[name]['median']:>9.3f}")
        print(f"{'(side by side) speed-up':40s} {side['speedup_min']:>9} "
              f"{side['speedup_median']:>9}")
    for dt, ops in r["op_breakdown_b64"].items():
        if dt == "note":
            continue
        tick = r["ms_per_tick_b64" + ("_bf16" if dt == "bfloat16" else "")]
        print(f"{'(ops alone) b64 ' + dt + ': sum / tick':40s} {ops['sum']:>9} {tick:>9}  "
              f"matmuls {100 * ops['matmul_share']:.0f}% of the sum; " + ", ".join(
                  f"{k} {v}" for k, v in ops.items() if k not in ("sum", "matmul_share")))
    st = r["stream_floor_b1_reference"]
    print(f"(reference) b1 weights over DRAM bandwidth: {st['stream_floor_b1_ms']} ms "
          f"({st['weight_mb_per_tick']} MB at {st['dram_gb_per_s']} GB/s; the weights stay in L3)")
    load = r["loadavg_1_5_15"]
    print(f"threads {r['threads']}, load average before "
          f"{tuple(round(v, 2) for v in load['before'])}, after "
          f"{tuple(round(v, 2) for v in load['after'])}")
    print("meets targets:", r["meets_targets"])


if __name__ == "__main__":
    main()
