"""A plain, per-operation CTM in the reference repository's parameter layout.

Written for the tests from the CTM technical report and the *layout* of the public
reference implementation's ``state_dict`` (SakanaAI/continuous-thought-machines,
``models/ctm.py``): same key names and tensor shapes, so a state dict built here
looks like one saved there. The computation is deliberately naive and independent
of ``thinkgym.ctm_core``:

- neuron-level models loop over neurons one at a time (weights ``(M, O, D)``);
- attention is ``nn.MultiheadAttention`` re-projecting keys/values every tick;
- the history grows by concatenation;
- synchronisation is recomputed from the full post-activation history with
  explicit decay weights (no recursion): ``S_ij(t) = sum_s r^(t-s) z_i(s) z_j(s) /
  sqrt(sum_s r^(t-s))``, over s = 0..t with z(0) the learned start state;
- certainty is ``1 - entropy / log(classes)`` per position, then averaged.

It only supports token inputs (no backbone): ``forward(tokens (B, N, backbone_dim))``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class RefSuperLinear(nn.Module):
    """Per-neuron linear layer, weights (in, out, N), bias (1, N, out), temperature T."""

    def __init__(self, in_dims: int, out_dims: int, n: int, do_norm: bool) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_dims + out_dims)
        self.w1 = nn.Parameter(torch.empty(in_dims, out_dims, n).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.zeros(1, n, out_dims))
        self.T = nn.Parameter(torch.ones(1))
        self.layernorm = nn.LayerNorm(in_dims) if do_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, in) -> (B, N, out)
        x = self.layernorm(x)
        outs = []
        for d in range(x.shape[1]):  # one neuron at a time
            outs.append(x[:, d, :] @ self.w1[:, :, d] + self.b1[0, d])
        return torch.stack(outs, dim=1) / self.T


class RefGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x[..., :half] * torch.sigmoid(x[..., half:])


class RefSqueeze(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


class RefUNet(nn.Module):
    def __init__(self, in_dims: int, out_dims: int, depth: int, minimum_width: int = 16) -> None:
        super().__init__()
        widths = [int(w) for w in np.linspace(out_dims, minimum_width, depth)]
        self.first_projection = nn.Sequential(nn.Linear(in_dims, widths[0]),
                                              nn.LayerNorm(widths[0]), nn.SiLU())
        self.down_projections = nn.ModuleList()
        self.up_projections = nn.ModuleList()
        self.skip_lns = nn.ModuleList()
        for i in range(depth - 1):
            self.down_projections.append(nn.Sequential(
                nn.Dropout(0.0), nn.Linear(widths[i], widths[i + 1]),
                nn.LayerNorm(widths[i + 1]), nn.SiLU()))
            self.up_projections.append(nn.Sequential(
                nn.Dropout(0.0), nn.Linear(widths[i + 1], widths[i]),
                nn.LayerNorm(widths[i]), nn.SiLU()))
            self.skip_lns.append(nn.LayerNorm(widths[i]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        downs = [self.first_projection(x)]
        for layer in self.down_projections:
            downs.append(layer(downs[-1]))
        y = downs[-1]
        for i in range(len(self.up_projections) - 1, -1, -1):
            y = self.skip_lns[i](self.up_projections[i](y) + downs[i])
        return y


class ReferenceCTM(nn.Module):
    """Naive CTM with reference-layout parameters (see the module docstring)."""

    def __init__(self, *, d_model: int, d_input: int, heads: int, n_synch_out: int,
                 n_synch_action: int, synapse_depth: int, memory_length: int,
                 deep_nlms: bool, memory_hidden_dims: int, do_layernorm_nlm: bool,
                 out_dims: int, prediction_reshaper: list[int], neuron_select_type: str,
                 backbone_dim: int, n_random_pairing_self: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.d_model, self.memory_length = d_model, memory_length
        self.prediction_reshaper = prediction_reshaper
        self.neuron_select_type = neuron_select_type
        self.n_synch = {"out": n_synch_out, "action": n_synch_action}
        self.kv_proj = nn.Sequential(nn.Linear(backbone_dim, d_input), nn.LayerNorm(d_input))
        sizes = {k: self._size(n) for k, n in self.n_synch.items()}
        self.q_proj = nn.Linear(sizes["action"], d_input)
        self.attention = nn.MultiheadAttention(d_input, heads, 0.0, batch_first=True)
        if synapse_depth == 1:
            self.synapses: nn.Module = nn.Sequential(
                nn.Dropout(0.0), nn.Linear(d_input + d_model, 2 * d_model), RefGLU(),
                nn.LayerNorm(d_model))
        else:
            self.synapses = RefUNet(d_input + d_model, d_model, synapse_depth)
        if deep_nlms:
            inner = nn.Sequential(
                RefSuperLinear(memory_length, 2 * memory_hidden_dims, d_model, do_layernorm_nlm),
                RefGLU(),
                RefSuperLinear(memory_hidden_dims, 2, d_model, do_layernorm_nlm),
                RefGLU(), RefSqueeze())
        else:
            inner = nn.Sequential(RefSuperLinear(memory_length, 2, d_model, do_layernorm_nlm),
                                  RefGLU(), RefSqueeze())
        self.trace_processor = nn.Sequential(inner)
        self.start_activated_state = nn.Parameter(
            torch.empty(d_model).uniform_(-math.sqrt(1 / d_model), math.sqrt(1 / d_model)))
        bound = math.sqrt(1 / (d_model + memory_length))
        self.start_trace = nn.Parameter(torch.empty(d_model, memory_length).uniform_(-bound, bound))
        gen = torch.Generator().manual_seed(seed)
        for kind, n in self.n_synch.items():
            left, right = self._pick(kind, n, n_random_pairing_self, gen)
            self.register_buffer(f"{kind}_neuron_indices_left", left)
            self.register_buffer(f"{kind}_neuron_indices_right", right)
            self.register_parameter(f"decay_params_{kind}", nn.Parameter(torch.zeros(sizes[kind])))
        self.output_projector = nn.Sequential(nn.Linear(sizes["out"], out_dims))

    def _size(self, n: int) -> int:
        return n if self.neuron_select_type == "random-pairing" else n * (n + 1) // 2

    def _pick(self, kind: str, n: int, n_self: int,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.d_model
        if self.neuron_select_type == "first-last":
            idx = torch.arange(d - n, d) if kind == "action" else torch.arange(n)
            return idx, idx.clone()
        # The reference draws with replacement; so do we, to exercise duplicate pairs.
        left = torch.randint(0, d, (n,), generator=gen)
        right = torch.randint(0, d, (n,), generator=gen)
        if self.neuron_select_type == "random-pairing":
            right = torch.cat([left[:n_self], right[n_self:]])
        return left, right

    def _pair_products(self, z: torch.Tensor, kind: str) -> torch.Tensor:
        left = z[:, getattr(self, f"{kind}_neuron_indices_left")]
        right = z[:, getattr(self, f"{kind}_neuron_indices_right")]
        if self.neuron_select_type == "random-pairing":
            return left * right
        outer = left.unsqueeze(2) * right.unsqueeze(1)
        n = left.shape[1]
        rows, cols = torch.triu_indices(n, n)
        return outer[:, rows, cols]

    def _synchronisation(self, z_history: list[torch.Tensor], kind: str) -> torch.Tensor:
        r = torch.exp(-getattr(self, f"decay_params_{kind}").clamp(0, 15))
        t = len(z_history) - 1
        num = sum(r ** (t - s) * self._pair_products(z, kind) for s, z in enumerate(z_history))
        den = sum(r ** (t - s) for s in range(t + 1))
        return num / torch.sqrt(den)

    def certainty(self, logits: torch.Tensor) -> torch.Tensor:
        b = logits.shape[0]
        shaped = logits.reshape([b, *self.prediction_reshaper])
        p = F.softmax(shaped, dim=-1)
        ent = -(p * F.log_softmax(shaped, dim=-1)).sum(-1) / math.log(shaped.shape[-1])
        return 1 - ent.reshape(b, -1).mean(-1)

    def forward(self, tokens: torch.Tensor, iterations: int) -> dict[str, torch.Tensor]:
        b = tokens.shape[0]
        kv = self.kv_proj(tokens)
        z = self.start_activated_state.unsqueeze(0).expand(b, -1)
        history = self.start_trace.unsqueeze(0).expand(b, -1, -1)
        zs = [z]
        out: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "logits", "certainty", "z", "A", "o", "synch_action", "synch_out")}
        for _ in range(iterations):
            synch_action = self._synchronisation(zs, "action")
            q = self.q_proj(synch_action).unsqueeze(1)
            o, _ = self.attention(q, kv, kv, need_weights=False)
            o = o.squeeze(1)
            pre = self.synapses(torch.cat([o, z], dim=-1))
            history = torch.cat([history[:, :, 1:], pre.unsqueeze(-1)], dim=-1)
            z = self.trace_processor(history)
            zs.append(z)
            synch_out = self._synchronisation(zs, "out")
            logits = self.output_projector(synch_out)
            for key, val in (("logits", logits), ("certainty", self.certainty(logits)),
                             ("z", z), ("A", history), ("o", o),
                             ("synch_action", synch_action), ("synch_out", synch_out)):
                out[key].append(val)
        return {k: torch.stack(v, dim=-1) for k, v in out.items()}

    def randomise_(self, seed: int) -> ReferenceCTM:
        """Give every parameter (biases, temperatures, norms, decays) non-trivial values."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                noise = torch.rand(p.shape, generator=gen, dtype=p.dtype)
                if name.endswith(".T"):
                    p.copy_(0.5 + noise)  # temperatures in [0.5, 1.5)
                elif "decay_params" in name:
                    p.copy_(noise * 2.0)  # r in (e^-2, 1]
                elif p.dim() == 1 or name.endswith("b1"):
                    p.add_((noise - 0.5) * 0.2)
        return self


class ReferenceParityCTM(ReferenceCTM):
    """ReferenceCTM plus the reference's parity input pipeline, in its key layout.

    ``backbone.embedding`` embeds each bit (index 1 for +1, 0 otherwise), in the
    reference's channels-first layout (B, d, L); ``positional_embedding.projection`` maps
    the start vector (0, 1) rotated by 0..180 degrees (one angle per position, evenly
    spaced) to d features; tokens are their sum, transposed to (B, L, d).
    """

    def __init__(self, *, length: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        d = int(kw["backbone_dim"])  # type: ignore[call-overload]
        self.length = length
        self.backbone = nn.Module()
        self.backbone.embedding = nn.Embedding(2, d)
        self.positional_embedding = nn.Module()
        self.positional_embedding.projection = nn.Linear(2, d)

    def tokens(self, bits: torch.Tensor) -> torch.Tensor:
        features = self.backbone.embedding((bits == 1).long()).transpose(1, 2)  # (B, d, L)
        rows = []
        for i in range(self.length):  # one rotation matrix per position, applied to (0, 1)
            theta = math.radians(180.0 * i / (self.length - 1))
            rot = torch.tensor([[math.cos(theta), -math.sin(theta)],
                                [math.sin(theta), math.cos(theta)]], dtype=features.dtype)
            rows.append(self.positional_embedding.projection(
                rot @ torch.tensor([0.0, 1.0], dtype=features.dtype)))
        pe = torch.stack(rows, dim=1).unsqueeze(0)  # (1, d, L)
        return (features + pe).flatten(2).transpose(1, 2)

    def forward_bits(self, bits: torch.Tensor, iterations: int) -> dict[str, torch.Tensor]:
        return self.forward(self.tokens(bits), iterations)
