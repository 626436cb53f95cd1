"""``CTMConfig``: the hyperparameters of a Continuous Thought Machine.

Symbols follow the CTM technical report (Darlow et al., 2025): ``D`` = ``d_model``,
``M`` = ``memory_length``, ``T`` = ``iterations``, ``D_out``/``D_action`` =
``n_synch_out``/``n_synch_action``.

This module imports no torch, so a config can be read and validated cheaply
(e.g. from a checkpoint's JSON) before the engine is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from thinkgym.errors import ConfigError

__all__ = ["CTMConfig", "NeuronSelectType"]

NeuronSelectType = Literal["first-last", "random", "random-pairing"]
_SELECT_TYPES: tuple[str, ...] = get_args(NeuronSelectType)


@dataclass(frozen=True)
class CTMConfig:
    """Hyperparameters of a :class:`~thinkgym.ctm_core.model.ContinuousThoughtMachine`.

    The defaults are the reference repository's parity configuration (64 bits,
    75 ticks, memory 25), the one ``benchmarks/ctm_tick.py`` measures.

    >>> cfg = CTMConfig(d_model=64, d_input=32, heads=4, n_synch_out=8,
    ...                 n_synch_action=8, memory_length=5, prediction_shape=(16, 2),
    ...                 backbone_dim=16)
    >>> cfg.out_dims, cfg.n_classes, cfg.synch_size_out
    (32, 2, 8)
    >>> CTMConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    d_model: int = 1024
    """D: number of neurons in the CTM's latent space (the post-activations ``z``)."""

    d_input: int = 512
    """Width of the attention space: projected keys/values, query and attention output ``o``."""

    heads: int = 8
    """Number of attention heads; must divide ``d_input``."""

    n_synch_out: int = 32
    """D_out: neurons (or pairs, for ``random-pairing``) used for the output synchronisation."""

    n_synch_action: int = 32
    """D_action: neurons (or pairs) used for the action synchronisation that forms the query."""

    synapse_depth: int = 1
    """Synapse model depth: 1 = Linear + GLU + LayerNorm; > 1 = U-Net MLP with skip connections."""

    memory_length: int = 25
    """M: length of the pre-activation history window each neuron-level model reads."""

    deep_nlms: bool = True
    """True: each neuron-level model is a 2-layer MLP with GLUs; False: one linear layer + GLU."""

    memory_hidden_dims: int = 16
    """Hidden width of each deep neuron-level model (used only when ``deep_nlms``)."""

    do_layernorm_nlm: bool = False
    """LayerNorm over each neuron's history before its NLM (the paper never uses it)."""

    prediction_shape: tuple[int, ...] = (64, 2)
    """Shape of one prediction; the last dim is the number of classes, ``out_dims = prod``.

    Parity-16 is ``(16, 2)``: 16 positions, 2 classes each. Certainty averages
    ``1 - normalised entropy`` over the leading positions."""

    neuron_select_type: NeuronSelectType = "random-pairing"
    """How neuron pairs for synchronisation are chosen: ``first-last`` (dense upper triangle
    over the first D_out / last D_action neurons), ``random`` (dense upper triangle over
    randomly drawn neurons) or ``random-pairing`` (D pairs drawn at random)."""

    n_random_pairing_self: int = 0
    """With ``random-pairing``: how many of the pairs are a neuron with itself (i, i)."""

    dropout: float = 0.0
    """Dropout rate in the synapses, the attention weights and the neuron-level models."""

    iterations: int = 75
    """T: default number of internal ticks for ``forward`` / ``rollout``."""

    backbone_dim: int = 512
    """Features per input token coming out of the task backbone (the key/value input width)."""

    seed: int = 0
    """Seed for the random neuron-pair selection (a private generator; global RNG untouched)."""

    def __post_init__(self) -> None:
        # Accept lists from JSON but store a hashable tuple.
        shape = self.prediction_shape
        if isinstance(shape, list):
            object.__setattr__(self, "prediction_shape", tuple(shape))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        positive = ("d_model", "d_input", "heads", "n_synch_out", "n_synch_action",
                    "synapse_depth", "memory_length", "memory_hidden_dims", "iterations",
                    "backbone_dim")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("must be an integer >= 1", field=name, got=value,
                                  fix=f"pass {name}=<positive int>")
        for name in ("deep_nlms", "do_layernorm_nlm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError("must be a bool", field=name, got=getattr(self, name),
                                  fix=f"pass {name}=True or False")
        if self.d_input % self.heads:
            raise ConfigError("d_input must be divisible by heads", field="heads",
                              got=self.heads,
                              fix=f"choose heads dividing d_input={self.d_input} (e.g. 8)")
        self._validate_prediction_shape()
        self._validate_selection()
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("must be a float in [0, 1)", field="dropout", got=self.dropout,
                              fix="pass dropout=0.0 (or e.g. 0.1)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("must be an integer >= 0", field="seed", got=self.seed,
                              fix="pass seed=0")

    def _validate_prediction_shape(self) -> None:
        shape = self.prediction_shape
        if (not isinstance(shape, tuple) or not shape
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)):
            raise ConfigError("must be a non-empty tuple of positive ints",
                              field="prediction_shape", got=shape,
                              fix="pass e.g. prediction_shape=(16, 2) for parity-16")
        if shape[-1] < 2:
            raise ConfigError("the last dim is the number of classes and must be >= 2 "
                              "(certainty divides by log(classes))", field="prediction_shape",
                              got=shape, fix="append a class dim, e.g. (16, 2)")

    def _validate_selection(self) -> None:
        kind = self.neuron_select_type
        if kind not in _SELECT_TYPES:
            raise ConfigError(f"must be one of {list(_SELECT_TYPES)}", field="neuron_select_type",
                              got=kind, fix="pass neuron_select_type='random-pairing'")
        n_self = self.n_random_pairing_self
        if isinstance(n_self, bool) or not isinstance(n_self, int) or n_self < 0:
            raise ConfigError("must be an integer >= 0", field="n_random_pairing_self",
                              got=n_self, fix="pass n_random_pairing_self=0")
        for name in ("n_synch_out", "n_synch_action"):
            n = getattr(self, name)
            if n > self.d_model:
                raise ConfigError(f"cannot select more neurons than d_model={self.d_model}",
                                  field=name, got=n, fix=f"pass {name} <= {self.d_model}")
            if kind == "random-pairing" and n_self > n:
                raise ConfigError(f"n_random_pairing_self must be <= {name}={n}",
                                  field="n_random_pairing_self", got=n_self,
                                  fix=f"pass n_random_pairing_self <= {n}")
        if kind == "first-last" and self.n_synch_out + self.n_synch_action > self.d_model:
            raise ConfigError("first-last needs n_synch_out + n_synch_action <= d_model",
                              field="d_model", got=self.d_model,
                              fix=f"pass d_model >= {self.n_synch_out + self.n_synch_action}")

    # ------------------------------------------------------------------ derived values
    @property
    def out_dims(self) -> int:
        """Width of the flat logits vector: ``prod(prediction_shape)``."""
        return math.prod(self.prediction_shape)

    @property
    def n_classes(self) -> int:
        """Classes per prediction position (the last dim of ``prediction_shape``)."""
        return self.prediction_shape[-1]

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_input // self.heads

    def synch_size(self, n_synch: int) -> int:
        """Length of a synchronisation vector built from ``n_synch`` neurons."""
        if self.neuron_select_type == "random-pairing":
            return n_synch
        return n_synch * (n_synch + 1) // 2

    @property
    def synch_size_action(self) -> int:
        """Length of the action synchronisation vector (the query projection's input)."""
        return self.synch_size(self.n_synch_action)

    @property
    def synch_size_out(self) -> int:
        """Length of the output synchronisation vector (the output projection's input)."""
        return self.synch_size(self.n_synch_out)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-field shapes of a ``StatePack`` of this config, without the batch dim."""
        return {"z": (self.d_model,), "A": (self.d_model, self.memory_length),
                "alpha_action": (self.synch_size_action,),
                "beta_action": (self.synch_size_action,),
                "alpha_out": (self.synch_size_out,), "beta_out": (self.synch_size_out,),
                "o": (self.d_input,)}

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (``prediction_shape`` becomes a list)."""
        out = asdict(self)
        out["prediction_shape"] = list(self.prediction_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CTMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError("unknown CTMConfig keys", field=unknown[0], got=unknown,
                              fix=f"use only {sorted(known)}")
        return cls(**data)
