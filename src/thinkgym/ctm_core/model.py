"""``ContinuousThoughtMachine``: the CTM engine with an explicit state, and ``TwoTickUnit``.

One tick (Darlow et al., 2025; symbols as in the paper)::

    S_action = alpha_action / sqrt(beta_action)        # action synchronisation
    q        = q_proj(S_action)
    o        = Attention(q, K, V)                      # K, V fixed for the rollout
    a        = synapses([o; z])                        # pre-activations (B, D)
    A        = [A[:, :, 1:], a]                        # history window of length M
    z'       = NLM(A)                                  # private per-neuron MLPs
    alpha_x  = r_x * alpha_x + z'_i z'_j ; beta_x = r_x * beta_x + 1   (x = action, out)
    logits   = output_proj(alpha_out / sqrt(beta_out))
    certainty = 1 - normalised entropy(logits)

with learnable decays ``r = exp(-clamp(decay, 0, 15))``. The action sums are
brought up to date with ``z'`` at the end of the tick that produced it (the
reference does it at the start of the next tick: same numbers), so a
``StatePack`` is complete on its own.

Numerically this matches the reference implementation (SakanaAI/
continuous-thought-machines, ``models/ctm.py``); ``tests/ctm_core/
test_model_golden.py`` checks it against a plain per-operation formulation.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thinkgym.ctm_core.config import CTMConfig
from thinkgym.ctm_core.fast import INFERENCE_DTYPES, rollout_fast
from thinkgym.ctm_core.modules import NeuronLevelModels, StaticKVAttention, build_synapses
from thinkgym.ctm_core.state import KV, Rollout, StatePack
from thinkgym.errors import ConfigError, NumericalError

__all__ = ["KV", "ContinuousThoughtMachine", "Rollout", "TwoTickUnit", "select_neuron_pairs"]

logger = logging.getLogger(__name__)

_CHECK_MODES = ("rollout", "tick", "off")


class _TickConstants(NamedTuple):
    r_action: torch.Tensor  # (Sa,) decays
    r_out: torch.Tensor  # (So,)
    pairs: torch.Tensor  # (2 (Sa + So),) neuron indices: i of action, out, then j
    nlm_weights: tuple[torch.Tensor, ...]  # NeuronLevelModels.scaled_weights()


def select_neuron_pairs(config: CTMConfig) -> dict[str, torch.Tensor]:
    """Neuron index pairs ``(i, j)`` for the action and output synchronisation.

    Returns ``{"action_i", "action_j", "out_i", "out_j"}`` (long tensors of length
    ``synch_size_action`` / ``synch_size_out``). Random strategies draw from
    ``np.random.default_rng([seed, k])`` (k = 0 action, 1 out); the global RNG is untouched.
    Neurons are drawn without replacement on each side.
    """
    d = config.d_model
    out: dict[str, torch.Tensor] = {}
    for k, (kind, n) in enumerate((("action", config.n_synch_action),
                                   ("out", config.n_synch_out))):
        rng = np.random.default_rng([config.seed, k])
        if config.neuron_select_type == "first-last":
            left = right = np.arange(d - n, d) if kind == "action" else np.arange(n)
        elif config.neuron_select_type == "random":
            left = rng.choice(d, size=n, replace=False)
            right = rng.choice(d, size=n, replace=False)
        else:  # random-pairing
            n_self = config.n_random_pairing_self
            left = rng.choice(d, size=n, replace=False)
            right = np.concatenate([left[:n_self], rng.choice(d, size=n - n_self, replace=False)])
        if config.neuron_select_type == "random-pairing":
            i_idx, j_idx = left, right
        else:  # dense upper triangle of the (left x right) product matrix
            rows, cols = np.triu_indices(n)
            i_idx, j_idx = left[rows], right[cols]
        out[f"{kind}_i"] = torch.as_tensor(np.asarray(i_idx), dtype=torch.long)
        out[f"{kind}_j"] = torch.as_tensor(np.asarray(j_idx), dtype=torch.long)
    return out


class ContinuousThoughtMachine(nn.Module):
    """A Continuous Thought Machine whose dynamic state is an explicit ``StatePack``.

    Args:
        config: the hyperparameters (``CTMConfig``).
        backbone: maps a task input batch to tokens ``(B, N, backbone_dim)``; ``None``
            means inputs already are such tokens.

    >>> cfg = CTMConfig(d_model=32, d_input=16, heads=2, n_synch_out=4, n_synch_action=4,
    ...                 memory_length=4, memory_hidden_dims=4, prediction_shape=(3, 2),
    ...                 backbone_dim=8, iterations=5)
    >>> model = ContinuousThoughtMachine(cfg)
    >>> out = model(torch.randn(2, 6, 8))           # 2 samples, 6 tokens of width 8
    >>> tuple(out.logits.shape), tuple(out.certainty.shape)
    ((2, 6, 5), (2, 5))
    """

    synch_action_i: torch.Tensor  # buffers (set in __init__), typed for readers
    synch_action_j: torch.Tensor
    synch_out_i: torch.Tensor
    synch_out_j: torch.Tensor

    def __init__(self, config: CTMConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(config, CTMConfig):
            raise ConfigError("config must be a CTMConfig", field="config", got=type(config),
                              fix="pass CTMConfig(...) or CTMConfig.from_dict(d)")
        self.config = config
        c = config
        self.backbone = backbone
        self.kv_proj = nn.Linear(c.backbone_dim, c.d_input)
        self.kv_norm = nn.LayerNorm(c.d_input)
        self.q_proj = nn.Linear(c.synch_size_action, c.d_input)
        self.attention = StaticKVAttention(c.d_input, c.heads, c.dropout)
        self.synapses = build_synapses(c.d_input + c.d_model, c.d_model, c.synapse_depth,
                                       c.dropout)
        self.nlm = NeuronLevelModels(c.d_model, c.memory_length, c.memory_hidden_dims,
                                     c.deep_nlms, c.do_layernorm_nlm, c.dropout)
        self.start_z = nn.Parameter(torch.empty(c.d_model).uniform_(
            -math.sqrt(1 / c.d_model), math.sqrt(1 / c.d_model)))
        bound = math.sqrt(1 / (c.d_model + c.memory_length))
        self.start_history = nn.Parameter(
            torch.empty(c.d_model, c.memory_length).uniform_(-bound, bound))
        self.decay_action = nn.Parameter(torch.zeros(c.synch_size_action))
        self.decay_out = nn.Parameter(torch.zeros(c.synch_size_out))
        self.output_proj = nn.Linear(c.synch_size_out, c.out_dims)
        for name, idx in select_neuron_pairs(c).items():
            self.register_buffer(f"synch_{name}", idx)

    def clear_fast_cache(self) -> None:
        """Drop the no-grad path's folded weights (rebuilt on the next no-grad rollout).

        Needed only after writing parameters through ``p.data`` in place, which
        PyTorch does not version; optimizer steps and ``load_state_dict`` are detected.
        """
        self.__dict__.pop("_folded_cache", None)

    @property
    def inference_dtype(self) -> torch.dtype:
        """The no-grad path's compute dtype (the parameters' unless set lower)."""
        return self.__dict__.get("_inference_dtype") or self._param_dtype

    def set_inference_dtype(self, dtype: str | torch.dtype | None) -> ContinuousThoughtMachine:
        """Run no-grad ticks (``rollout_from``, ``tick``) in ``"bfloat16"`` or ``"float32"``.

        bfloat16 uses the CPU's AMX/AVX-512 bf16 units through torch: every per-tick
        matmul and the pre-activation history run in it, while the synchronisation
        sums, logits and returned states stay in the parameters' dtype. It pays off
        at large batch (``benchmarks/ctm_tick.py``); at batch 1 it is slower. Training
        (autograd) is unaffected. ``None`` restores the parameters' dtype.
        """
        if isinstance(dtype, str):
            if dtype not in INFERENCE_DTYPES:
                raise ConfigError(f"inference dtype must be one of {list(INFERENCE_DTYPES)}",
                                  field="dtype", got=dtype, fix="pass 'bfloat16' or 'float32'")
            dtype = INFERENCE_DTYPES[dtype]
        elif dtype is not None and dtype not in INFERENCE_DTYPES.values():
            raise ConfigError(f"inference dtype must be one of {list(INFERENCE_DTYPES)}",
                              field="dtype", got=dtype, fix="pass 'bfloat16' or 'float32'")
        c = self.config
        if dtype not in (None, self._param_dtype) and (c.synapse_depth != 1
                                                       or c.do_layernorm_nlm):
            raise ConfigError(
                "a lower inference dtype needs synapse_depth=1 and do_layernorm_nlm=False "
                "(the fused tick)", field="dtype", got=str(dtype),
                fix=f"keep float32 for this model (synapse_depth={c.synapse_depth}, "
                    f"do_layernorm_nlm={c.do_layernorm_nlm})")
        self.__dict__["_inference_dtype"] = dtype  # a plain attribute, not module state
        return self

    def train(self, mode: bool = True) -> ContinuousThoughtMachine:
        self.clear_fast_cache()
        return super().train(mode)

    # ------------------------------------------------------------------ inputs
    @property
    def _param_dtype(self) -> torch.dtype:
        return self.start_z.dtype

    def compute_kv(self, x: torch.Tensor) -> KV:
        """Backbone, key/value projection and attention K/V of an input batch (once per input)."""
        c = self.config
        if self.backbone is not None:
            tokens = self.backbone(x)
            where = f"the backbone ({type(self.backbone).__name__}) output"
        else:
            tokens = x
            where = "the input (no backbone: inputs must already be tokens)"
        if (not isinstance(tokens, torch.Tensor) or tokens.dim() != 3
                or tokens.shape[-1] != c.backbone_dim):
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens)
            raise ValueError(f"{where} must have shape (B, N, backbone_dim={c.backbone_dim}); "
                             f"received {got}. Fix: reshape to tokens or set "
                             "CTMConfig.backbone_dim to the feature width")
        if not tokens.is_floating_point():
            raise ValueError(f"{where} must be floating point; received dtype {tokens.dtype}. "
                             "Fix: cast with .float() or use a backbone that embeds it")
        tokens = tokens.to(self._param_dtype)
        k, v = self.attention.project_kv(self.kv_norm(self.kv_proj(tokens)))
        return KV(k, v)

    # ------------------------------------------------------------------ state
    def _decays(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Clamp in the graph instead of overwriting the parameter (the reference mutates
        # .data in forward); decays stay in (e^-15, 1].
        return (torch.exp(-self.decay_action.clamp(0.0, 15.0)),
                torch.exp(-self.decay_out.clamp(0.0, 15.0)))

    def init_state(self, kv: KV) -> StatePack:
        """The learned start state broadcast to ``kv``'s batch (tick 0, ``o`` = zeros)."""
        c = self.config
        batch = kv.batch_size
        z = self.start_z.unsqueeze(0).expand(batch, -1)
        history = self.start_history.unsqueeze(0).expand(batch, -1, -1)
        pp_a = z[:, self.synch_action_i] * z[:, self.synch_action_j]
        pp_o = z[:, self.synch_out_i] * z[:, self.synch_out_j]
        return StatePack(
            z=z, A=history,
            alpha_action=pp_a, beta_action=torch.ones_like(pp_a),
            alpha_out=pp_o, beta_out=torch.ones_like(pp_o),
            o=z.new_zeros(batch, c.d_input), tick=0,
        )

    def expected_state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-field shapes of a ``StatePack`` for this config (without the batch dim)."""
        return self.config.state_shapes()

    def check_inputs(self, state: StatePack, kv: KV) -> None:
        """Raise ``ConfigError``/``ValueError`` naming expected vs received shapes."""
        if not isinstance(state, StatePack):
            raise ValueError(f"state must be a StatePack; received {type(state).__name__}. "
                             "Fix: start from model.init_state(kv)")
        state.check_shapes(self.expected_state_shapes())
        c = self.config
        want = (state.batch_size, c.heads, kv.k.shape[2], c.head_dim)
        if tuple(kv.k.shape) != want or kv.v.shape != kv.k.shape:
            raise ValueError(f"KV must have k and v of shape {want} (batch of the state, "
                             f"heads={c.heads}, head_dim={c.head_dim}); received "
                             f"{tuple(kv.k.shape)} and {tuple(kv.v.shape)}. Fix: compute kv "
                             "with this model's compute_kv on the same batch")
        want_dtype, want_device = self._param_dtype, self.start_z.device
        for name, t in (("state", state.z), ("state.A", state.A), ("kv", kv.k)):
            if t.dtype != want_dtype or t.device != want_device:
                raise ValueError(f"{name} must be {want_dtype} on {want_device} like the model; "
                                 f"received {t.dtype} on {t.device}. Fix: state.to(device=..., "
                                 "dtype=...) / kv.to(...), or move the model")

    def check_state(self, state: StatePack) -> None:
        """``NumericalError`` naming the tick if the state holds NaN/Inf."""
        state.check_finite()

    # ------------------------------------------------------------------ one tick
    def certainty(self, logits: torch.Tensor) -> torch.Tensor:
        """``1 - normalised entropy`` of ``logits (B, out_dims)``, mean over positions: (B,)."""
        c = self.config
        logp = F.log_softmax(logits.reshape(logits.shape[0], -1, c.n_classes), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)  # (B, positions)
        return 1.0 - entropy.mean(-1) / math.log(c.n_classes)

    def readout(self, state: StatePack) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, out_dims)`` and certainty ``(B,)`` of a state."""
        logits = self.output_proj(state.alpha_out / torch.sqrt(state.beta_out))
        return logits, self.certainty(logits)

    def tick(self, state: StatePack, kv: KV) -> tuple[StatePack, torch.Tensor, torch.Tensor]:
        """One tick: ``(State_t, KV) -> (State_{t+1}, logits_{t+1}, certainty_{t+1})``.

        Without autograd (and with dropout inactive) this runs the fast path.
        """
        self.check_inputs(state, kv)
        if self._fast_path_applies():
            logits, _, new = rollout_fast(self, state, kv, 1, False, False)
            logits = logits[..., 0]
            return new, logits, self.certainty(logits)
        new = self._tick(state, kv, self._tick_constants())
        logits, certainty = self.readout(new)
        return new, logits, certainty

    def _fast_path_applies(self) -> bool:
        return not torch.is_grad_enabled() and (not self.training or self.config.dropout == 0.0)

    def _tick_constants(self) -> _TickConstants:
        """Weight-only terms of a tick, computed once per rollout (they stay in the graph)."""
        r_action, r_out = self._decays()
        pairs = torch.cat((self.synch_action_i, self.synch_out_i,
                           self.synch_action_j, self.synch_out_j))
        return _TickConstants(r_action, r_out, pairs, self.nlm.scaled_weights())

    def _tick(self, state: StatePack, kv: KV, k: _TickConstants) -> StatePack:
        s_action = state.alpha_action / torch.sqrt(state.beta_action)
        o = self.attention(self.q_proj(s_action), kv.k, kv.v)
        pre = self.synapses(torch.cat((o, state.z), dim=-1))  # (B, D)
        history = torch.cat((state.A[:, :, 1:], pre.unsqueeze(-1)), dim=-1)  # (B, D, M)
        z = self.nlm(history, k.nlm_weights)
        # One gather for all four index sets (one index_add in backward, not four).
        sa, so = k.r_action.shape[0], k.r_out.shape[0]
        g = z.index_select(1, k.pairs)
        pp = g[:, :sa + so] * g[:, sa + so:]  # z_i * z_j for every pair, action then out
        return StatePack(
            z=z, A=history,
            alpha_action=k.r_action * state.alpha_action + pp[:, :sa],
            beta_action=k.r_action * state.beta_action + 1.0,
            alpha_out=k.r_out * state.alpha_out + pp[:, sa:],
            beta_out=k.r_out * state.beta_out + 1.0,
            o=o, tick=state.tick + 1,
        )

    # ------------------------------------------------------------------ many ticks
    def forward(self, x: torch.Tensor) -> Rollout:
        """``rollout(x)`` with ``config.iterations`` ticks."""
        return self.rollout(x)

    def rollout(self, x: torch.Tensor, ticks: int | None = None, return_states: bool = False,
                check: str = "rollout") -> Rollout:
        """Compute K/V once, start from ``init_state`` and run ``ticks`` ticks."""
        kv = self.compute_kv(x)
        return self.rollout_from(self.init_state(kv), kv, ticks, return_states, check)

    def rollout_from(self, state: StatePack, kv: KV, ticks: int | None = None,
                     return_states: bool = False, check: str = "rollout") -> Rollout:
        """Run ``ticks`` ticks from any state (e.g. to continue a long rollout in chunks).

        ``check``: ``"rollout"`` looks for NaN/Inf once at the end, ``"tick"`` after
        every tick, ``"off"`` never. Either raises ``NumericalError`` naming the tick.
        """
        ticks = self.config.iterations if ticks is None else ticks
        if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 1:
            raise ConfigError("ticks must be an integer >= 1", field="ticks", got=ticks,
                              fix="pass ticks=None (config.iterations) or a positive int")
        if check not in _CHECK_MODES:
            raise ConfigError(f"check must be one of {list(_CHECK_MODES)}", field="check",
                              got=check, fix="pass check='rollout'")
        self.check_inputs(state, kv)
        if self._fast_path_applies():
            logits, states, current = rollout_fast(self, state, kv, ticks, return_states,
                                                   check == "tick")
        else:
            logits, states, current = self._rollout_autograd(state, kv, ticks, return_states,
                                                             check == "tick")
        batch, out_dims, n = logits.shape
        certainty = self.certainty(logits.transpose(1, 2).reshape(batch * n, out_dims))
        result = Rollout(logits=logits, certainty=certainty.view(batch, n), states=states,
                         initial_state=state, final_state=current)
        if check == "rollout":
            self._check_rollout(result)
        return result

    def _rollout_autograd(self, state: StatePack, kv: KV, ticks: int, return_states: bool,
                          check_ticks: bool) -> tuple[torch.Tensor, list[StatePack] | None,
                                                      StatePack]:
        """Tick by tick through ``_tick``: the path for training (any autograd, dropout)."""
        constants = self._tick_constants()
        synch_out, states = [], []
        current = state
        for _ in range(ticks):
            current = self._tick(current, kv, constants)
            synch_out.append(current.alpha_out / torch.sqrt(current.beta_out))
            if return_states:
                states.append(current)
            if check_ticks:  # a finite state (and weights) gives finite logits
                current.check_finite()
        # One output projection for all ticks (one matmul in backward, not T).
        logits = self.output_proj(torch.stack(synch_out, dim=1))  # (B, T, out_dims)
        return logits.transpose(1, 2).contiguous(), states if return_states else None, current

    # ------------------------------------------------------------------ NaN detection
    def _check_rollout(self, result: Rollout) -> None:
        finite_per_tick = torch.isfinite(result.logits).flatten(0, 1).all(dim=0)  # (T,)
        start = result.initial_state.tick
        if not bool(finite_per_tick.all()):
            first = int((~finite_per_tick).nonzero()[0, 0])
            raise NumericalError(
                f"non-finite logits first at tick {start + first + 1} "
                f"(rollout ticks {start + 1}..{start + result.ticks})", got="NaN/Inf",
                fix="lower the learning rate, clip gradients, or check the inputs for NaN",
            )
        result.final_state.check_finite()


class TwoTickUnit(nn.Module):
    """``f(State_t, KV) -> (State_{t+2}, logits_{t+2}, certainty_{t+2})``.

    Two full ticks with the wrapped model's (shared) weights in one autograd graph,
    so the attention output of tick t+1 lies inside the graph of State_{t+2} and the
    attention projections get a direct gradient from a loss on State_{t+2}.
    """

    def __init__(self, model: ContinuousThoughtMachine) -> None:
        super().__init__()
        self.model = model

    def forward(self, state: StatePack, kv: KV) -> tuple[StatePack, torch.Tensor, torch.Tensor]:
        mid, _, _ = self.model.tick(state, kv)
        return self.model.tick(mid, kv)

