"""The reference repository's input backbones, reproduced so imported checkpoints load whole.

A CTM saved by SakanaAI/continuous-thought-machines holds, besides the core, the weights of
its input pipeline: ``initial_rgb`` -> ``backbone`` -> ``+ positional_embedding`` ->
tokens. This module restates that pipeline (our code, the same maths) for the backbones
this library has a task for, so :func:`~thinkgym.ctm_core.convert.convert_reference_state_dict`
can build a complete model. Anything else is refused by name (``detect_backbone``): an
imported model never runs with random backbone weights.

Supported:

``parity_backbone`` + ``custom-rotational-1d`` (the reference's parity setup)
    ``tokens[b, i] = E[x_i == 1] + W p_i + c`` with ``E`` an ``nn.Embedding(2, d)``,
    ``p_i = R(theta_i) (0, 1) = (-sin theta_i, cos theta_i)``,
    ``theta_i = i * 180 / (L - 1)`` degrees, and ``W, c`` a ``nn.Linear(2, d)``.
    Reference keys ``backbone.embedding.weight`` and
    ``positional_embedding.projection.{weight,bias}``.

Not reproduced (a clear error names them): the ResNet and ``shallow-wide`` image
backbones, the MNIST/MiniGrid/classic-control backbones, and the learnable-Fourier and
2-D rotational positional embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from thinkgym.errors import CheckpointError

__all__ = ["BACKBONES", "ReferenceParityBackbone", "build_backbone", "detect_backbone",
           "map_backbone_state_dict"]

_PARITY_KEYS = {"backbone.embedding.weight", "positional_embedding.projection.weight",
                "positional_embedding.projection.bias"}


class ReferenceParityBackbone(nn.Module):
    """+-1 bits ``(B, L)`` -> tokens ``(B, L, d)``: bit embedding + rotational position code.

    Matches the reference's ``ParityBackbone`` followed by ``CustomRotationalEmbedding1D``
    (see the module docstring); parameters ``embedding`` and ``position``.
    """

    def __init__(self, length: int, d_embedding: int) -> None:
        super().__init__()
        self.length = length
        self.embedding = nn.Embedding(2, d_embedding)
        self.position = nn.Linear(2, d_embedding)
        theta = torch.deg2rad(torch.linspace(0, 180, length))
        self.register_buffer("angles", torch.stack((-torch.sin(theta), torch.cos(theta)), 1),
                             persistent=False)  # (L, 2): R(theta) (0, 1)

    def checkpoint_spec(self) -> dict[str, Any]:
        """How ``load_checkpoint`` rebuilds this backbone (see ``save_checkpoint``)."""
        return {"kind": "reference_parity",
                "kwargs": {"length": self.length, "d_embedding": self.embedding.embedding_dim}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"parity inputs must be (B, {self.length}) of +-1 bits; received "
                             f"{tuple(x.shape)}. Fix: pass the task's inputs unchanged")
        bits = self.embedding((x == 1).long())  # (B, L, d)
        return bits + self.position(self.angles.to(bits.dtype)).unsqueeze(0)


BACKBONES: dict[str, type[nn.Module]] = {"reference_parity": ReferenceParityBackbone}
"""Backbone kinds a checkpoint may name in its ``backbone`` field."""


def detect_backbone(backbone_sd: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """``{"kind", "kwargs"}`` of the reference backbone these weights belong to.

    None when there are no backbone weights (the reference's ``backbone_type='none'``:
    inputs are already tokens). Raises :class:`CheckpointError` naming the backbone when it
    is one this library does not reproduce.
    """
    keys = set(backbone_sd)
    if not keys:
        return None
    if keys == _PARITY_KEYS:
        embedding = backbone_sd["backbone.embedding.weight"]
        if embedding.shape[0] != 2:
            raise CheckpointError("a parity backbone embeds 2 symbols",
                                  got=tuple(embedding.shape),
                                  fix="check the file is a reference parity checkpoint")
        return {"kind": "reference_parity", "kwargs": {"d_embedding": int(embedding.shape[1])}}
    raise CheckpointError(
        f"unsupported reference backbone: {_describe(keys)}", got=sorted(keys)[:6],
        fix="supported: the parity backbone with the 'custom-rotational-1d' positional "
            "embedding; others (ResNet, shallow-wide, learnable-Fourier positions) are not "
            "reproduced here - convert the core and pass tokens, or add the backbone")


def _describe(keys: set[str]) -> str:
    if any(k.startswith(("backbone.layer", "backbone.conv1", "backbone.bn1")) for k in keys):
        return "a ResNet image backbone"
    if any(k.startswith("positional_embedding.") and "projection" not in k for k in keys):
        return "a learnable-Fourier or 2-D positional embedding"
    if "backbone.embedding.weight" in keys:
        return "an embedding backbone with an unknown positional embedding"
    return "an unknown backbone"


def map_backbone_state_dict(kind: str, backbone_sd: Mapping[str, torch.Tensor]
                            ) -> dict[str, torch.Tensor]:
    """Reference backbone keys -> ours (``backbone.*`` of ``ContinuousThoughtMachine``)."""
    if kind != "reference_parity":
        raise CheckpointError("unknown backbone kind", got=kind, fix=f"one of {list(BACKBONES)}")
    return {"backbone.embedding.weight": backbone_sd["backbone.embedding.weight"],
            "backbone.position.weight": backbone_sd["positional_embedding.projection.weight"],
            "backbone.position.bias": backbone_sd["positional_embedding.projection.bias"]}


def build_backbone(spec: Mapping[str, Any], **kwargs: Any) -> nn.Module:
    """A backbone from a ``{"kind", "kwargs"}`` spec (plus e.g. ``length`` from the task)."""
    kind = spec.get("kind")
    if kind not in BACKBONES:
        raise CheckpointError("unknown backbone kind", got=kind, fix=f"one of {list(BACKBONES)}")
    return BACKBONES[kind](**{**dict(spec.get("kwargs") or {}), **kwargs})
