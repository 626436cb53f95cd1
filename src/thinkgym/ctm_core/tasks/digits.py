"""Digits: classify scikit-learn's bundled 8x8 handwritten digits (offline, no download).

The 1,797 images of ``sklearn.datasets.load_digits`` are split by image, once, with a
seeded permutation: ``test_fraction`` of them are the test split and never appear in
training. Item ``index`` of a split is a random image of that split; training items
are shifted by up to ``max_shift`` pixels (zero padding), test items are unchanged and
go through the test images in order (``index % n_test``).

Input (1, 8, 8) float in [0, 1]; target (1,) class 0..9; one output position.

    >>> task = DigitsTask()
    >>> x, y = task.sample(0, "test")
    >>> tuple(x.shape), task.prediction_shape, 0 <= int(y) <= 9
    ((1, 8, 8), (1, 10), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from thinkgym.ctm_core.tasks.base import TASKS, Split, Task, TaskConfig, _check_split
from thinkgym.ctm_core.tasks.positions import grid_coordinates
from thinkgym.errors import ConfigError

__all__ = ["DigitsBackbone", "DigitsConfig", "DigitsTask"]


@dataclass(frozen=True)
class DigitsConfig(TaskConfig):
    """Config of :class:`DigitsTask`."""

    max_shift: int = 1
    """Random translation (pixels, each axis) of training images; 0 disables it."""
    embed_dim: int = 32
    """Channels of the conv backbone = features per token (one token per pixel)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_shift, int) or not 0 <= self.max_shift <= 3:
            raise ConfigError("must be an int in [0, 3]", field="max_shift", got=self.max_shift,
                              fix="pass max_shift=1")
        if not isinstance(self.embed_dim, int) or self.embed_dim < 1:
            raise ConfigError("must be a positive int", field="embed_dim", got=self.embed_dim,
                              fix="pass embed_dim=32")


_PIXEL_MEAN, _PIXEL_STD = 0.305, 0.376
"""Mean and standard deviation of the [0, 1] pixels over all 1,797 images."""


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64) from scikit-learn's copy.

    Reads the CSV that ``load_digits`` reads, found without importing ``sklearn.datasets``
    (which pulls in scipy: ~10 s on a loaded machine); falls back to ``load_digits``.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    csv = (Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
           if spec is not None and spec.origin else None)
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)  # (1797, 65): pixels, label
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        data = load_digits()
        pixels, labels = data.data, data.target
    images = (np.asarray(pixels, dtype=np.float32) / 16.0).reshape(-1, 8, 8)
    return images, np.asarray(labels).astype(np.int64)


@lru_cache(maxsize=16)
def _split_indices(seed: int, test_fraction: float) -> dict[str, np.ndarray]:
    _, labels = _digits()
    order = np.random.default_rng([seed, 7]).permutation(len(labels))
    n_test = max(1, round(test_fraction * len(labels)))
    return {"test": np.sort(order[:n_test]), "train": np.sort(order[n_test:])}


class DigitsBackbone(nn.Module):
    """Images (B, 1, 8, 8) -> tokens (B, 64, dim): pixel + grid coordinates -> two 3x3 convs."""

    coords: torch.Tensor  # buffer (set in __init__), typed for readers

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("coords", grid_coordinates(8, freqs=3), persistent=False)
        self.convs = nn.Sequential(nn.Conv2d(1 + self.coords.shape[0], dim, 3, padding=1),
                                   nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"digit inputs must be (B, 1, 8, 8), got {tuple(x.shape)}")
        coords = self.coords.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        # The one pixel channel is standardised and scaled to carry as much variance as
        # the coordinate channels together: raw [0, 1] pixels left the tokens ~94% position
        # code, the CTM's output at init barely depended on the image, and training sat at
        # chance (10%) for 500+ steps; scaled, it leaves chance within ~75 steps.
        x = (x - _PIXEL_MEAN) / _PIXEL_STD * math.sqrt(coords.shape[1])
        return self.convs(torch.cat([x, coords], dim=1)).flatten(2).transpose(1, 2)  # (B, 64, dim)


@TASKS.register("digits")
class DigitsTask(Task):
    """10-way classification of sklearn's 8x8 digits (accuracy)."""

    name = "digits"
    Config = DigitsConfig
    config: DigitsConfig

    @property
    def prediction_shape(self) -> tuple[int, int]:
        return (1, 10)

    @property
    def backbone_dim(self) -> int:
        return self.config.embed_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def make_backbone(self) -> nn.Module:
        return DigitsBackbone(self.config.embed_dim)

    def split_images(self, split: Split) -> np.ndarray:
        """Indices into ``load_digits()`` of the images in ``split``."""
        _check_split(split)
        return _split_indices(self.config.seed, self.config.test_fraction)[split]

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self._item(int(rng.choice(self.split_images("train"))), rng)

    def sample_numpy(self, index: int, split: Split = "train") -> tuple[np.ndarray, np.ndarray]:
        split_id = _check_split(split)
        if not isinstance(index, (int, np.integer)) or index < 0:
            raise ConfigError("item index must be a non-negative int", field="index", got=index,
                              fix="pass index >= 0")
        if split == "test":
            pool = self.split_images("test")
            return self._item(int(pool[int(index) % len(pool)]), None)
        return self.generate(np.random.default_rng([self.config.seed, split_id, int(index)]))

    def _item(self, image_index: int, rng: np.random.Generator | None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        images, labels = _digits()
        image = images[image_index]
        shift = self.config.max_shift
        if rng is not None and shift:
            dr, dc = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
            padded = np.pad(image, shift)
            image = padded[shift + dr: shift + dr + 8, shift + dc: shift + dc + 8]
        return image[None].copy(), labels[image_index: image_index + 1].copy()
