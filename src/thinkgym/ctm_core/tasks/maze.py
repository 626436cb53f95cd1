"""Mazes: find the shortest route from start to goal in a procedurally generated maze.

The maze is an ``size x size`` pixel grid (``size`` odd, 7..39): cells sit at odd
coordinates, walls between them are carved by a randomised depth-first search, so
the maze is *perfect* (exactly one route between any two cells). Start and goal are
two distinct random cells. Input: the grid as int8 codes (0 wall, 1 open, 2 start,
3 goal). Target: the route as ``route_length`` moves, one pixel each, coded
0 up, 1 down, 2 left, 3 right, 4 stay; after the goal is reached the rest is "stay",
and a route longer than ``route_length`` is cut (the model predicts its first moves).

Metrics: ``accuracy`` (per move), ``route_accuracy`` (all moves exact) and
``goal_reached`` (following the predicted moves from the start walks through no wall
and reaches the goal).

    >>> task = MazeTask(MazeConfig(size=9))
    >>> x, y = task.sample(0)
    >>> tuple(x.shape), task.prediction_shape
    ((9, 9), (30, 5))
    >>> bool(follow_route(x.numpy(), y.numpy()))
    True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from thinkgym.ctm_core.tasks.base import TASKS, Task, TaskBatch, TaskConfig, positions_loss
from thinkgym.ctm_core.tasks.positions import grid_coordinates
from thinkgym.errors import ConfigError

__all__ = [
    "MOVES",
    "MazeBackbone",
    "MazeConfig",
    "MazeTask",
    "follow_route",
    "generate_maze",
    "shortest_route",
]

WALL, OPEN, START, GOAL = 0, 1, 2, 3
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))
"""(row, col) step of each move code: up, down, left, right, stay."""
STAY = 4


@dataclass(frozen=True)
class MazeConfig(TaskConfig):
    """Config of :class:`MazeTask`."""

    size: int = 9
    """Side of the pixel grid; odd, 7..39 (a 9x9 grid has 4x4 cells)."""
    route_length: int | None = None
    """Moves predicted; None: every route fits (2*cells-2), capped at 100."""
    embed_dim: int = 32
    """Channels of the conv backbone = features per token (one token per pixel)."""
    curriculum_lookahead: int = 5
    """Training loss covers moves up to this many past the first wrong one; 0: all moves."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.size, int) or self.size % 2 == 0 or not 5 <= self.size <= 63:
            raise ConfigError("must be an odd int in [5, 63]", field="size", got=self.size,
                              fix="pass size=9 (or 7, 11, ... 39)")
        if self.route_length is not None and (
                not isinstance(self.route_length, int) or self.route_length < 1):
            raise ConfigError("must be a positive int or None", field="route_length",
                              got=self.route_length, fix="pass route_length=None")
        if not isinstance(self.embed_dim, int) or self.embed_dim < 4:
            raise ConfigError("must be an int >= 4", field="embed_dim", got=self.embed_dim,
                              fix="pass embed_dim=32")
        if not isinstance(self.curriculum_lookahead, int) or self.curriculum_lookahead < 0:
            raise ConfigError("must be an int >= 0", field="curriculum_lookahead",
                              got=self.curriculum_lookahead, fix="pass 5, or 0 to disable")

    @property
    def steps(self) -> int:
        """The number of route moves predicted (``route_length`` resolved)."""
        if self.route_length is not None:
            return self.route_length
        cells = ((self.size - 1) // 2) ** 2
        return min(100, 2 * cells - 2)


def generate_maze(size: int, rng: np.random.Generator) -> np.ndarray:
    """A perfect maze (int8, WALL/OPEN) carved by randomised depth-first search."""
    n = (size - 1) // 2
    grid = np.zeros((size, size), dtype=np.int8)
    visited = np.zeros((n, n), dtype=bool)
    start = (int(rng.integers(n)), int(rng.integers(n)))
    stack = [start]
    visited[start] = True
    grid[2 * start[0] + 1, 2 * start[1] + 1] = OPEN
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in MOVES[:4]
                   if 0 <= r + dr < n and 0 <= c + dc < n and not visited[r + dr, c + dc]]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(rng.integers(len(options)))]
        visited[nr, nc] = True
        grid[r + nr + 1, c + nc + 1] = OPEN  # the wall between the two cells
        grid[2 * nr + 1, 2 * nc + 1] = OPEN
        stack.append((nr, nc))
    return grid


def shortest_route(grid: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[int]:
    """Move codes of the shortest route from ``start`` to ``goal`` (BFS over open pixels)."""
    parent: dict[tuple[int, int], tuple[tuple[int, int], int]] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        here = queue.popleft()
        if here == goal:
            break
        for code, (dr, dc) in enumerate(MOVES[:4]):
            nxt = (here[0] + dr, here[1] + dc)
            if (0 <= nxt[0] < grid.shape[0] and 0 <= nxt[1] < grid.shape[1]
                    and grid[nxt] != WALL and nxt not in seen):
                seen.add(nxt)
                parent[nxt] = (here, code)
                queue.append(nxt)
    if goal not in seen:
        raise ValueError(f"goal {goal} is unreachable from {start}")
    moves: list[int] = []
    node = goal
    while node != start:
        node, code = parent[node]
        moves.append(code)
    return moves[::-1]


def follow_route(grid: np.ndarray, moves: np.ndarray) -> bool:
    """Walk ``moves`` from the start cell: True if the goal is reached without a wall hit."""
    (r,), (c,) = np.nonzero(grid == START)
    for code in np.asarray(moves).tolist():
        dr, dc = MOVES[int(code)]
        r, c = r + dr, c + dc
        if not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]) or grid[r, c] == WALL:
            return False
        if grid[r, c] == GOAL:
            return True
    return False


class MazeBackbone(nn.Module):
    """Grid codes (B, S, S) -> tokens (B, S*S, dim): code embedding + coordinates -> 3 convs."""

    coords: torch.Tensor  # buffer (set in __init__), typed for readers

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.code = nn.Embedding(4, dim)
        self.register_buffer("coords", grid_coordinates(size), persistent=False)
        coord_channels = self.coords.shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(dim + coord_channels, dim, 3, padding=1), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.size, self.size):
            raise ValueError(f"maze inputs must be (B, {self.size}, {self.size}), "
                             f"got {tuple(x.shape)}")
        feats = self.code(x.long()).permute(0, 3, 1, 2)  # (B, dim, S, S)
        coords = self.coords.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        out = self.convs(torch.cat([feats, coords], dim=1))  # (B, dim, S, S)
        return out.flatten(2).transpose(1, 2)  # (B, S*S, dim)


@TASKS.register("maze")
class MazeTask(Task):
    """Shortest route through a perfect maze as a sequence of moves (route accuracy)."""

    name = "maze"
    Config = MazeConfig
    config: MazeConfig

    @property
    def prediction_shape(self) -> tuple[int, int]:
        return (self.config.steps, len(MOVES))

    @property
    def backbone_dim(self) -> int:
        return self.config.embed_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.config.size, self.config.size)

    def make_backbone(self) -> nn.Module:
        return MazeBackbone(self.config.size, self.config.embed_dim)

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        size = self.config.size
        grid = generate_maze(size, rng)
        n = (size - 1) // 2
        a, b = rng.choice(n * n, size=2, replace=False)
        start = (2 * int(a // n) + 1, 2 * int(a % n) + 1)
        goal = (2 * int(b // n) + 1, 2 * int(b % n) + 1)
        moves = shortest_route(grid, start, goal)[: self.config.steps]
        grid[start], grid[goal] = START, GOAL
        target = np.full(self.config.steps, STAY, dtype=np.int64)
        target[: len(moves)] = moves
        return grid, target

    def per_tick_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over moves; with the curriculum, only up to lookahead past the
        first wrong move (at the best tick) counts, so early moves are learnt first."""
        split = self.split_logits(logits)  # (B, P, C, T)
        losses = positions_loss(split, targets)  # (B, P, T)
        lookahead = self.config.curriculum_lookahead
        if lookahead == 0:
            return losses.mean(1)
        with torch.no_grad():
            correct = split.argmax(2) == targets.unsqueeze(-1)  # (B, P, T)
            leading = correct.long().cumprod(1).sum(1)  # (B, T) moves right before a mistake
            upto = leading.max(-1).values + lookahead  # (B,)
            positions = torch.arange(split.shape[1], device=split.device)
            mask = (positions[None, :] < upto[:, None]).to(losses.dtype)  # (B, P)
        return (losses * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)

    def metric_values(self, logits: torch.Tensor, batch: TaskBatch) -> dict[str, torch.Tensor]:
        moves = self.split_logits(logits).argmax(2)  # (B, P, T)
        correct = moves == batch.targets.unsqueeze(-1)
        return {"accuracy": correct.float().mean(1),
                "route_accuracy": correct.all(1).float(),
                "goal_reached": _goal_reached(batch.inputs, moves).float()}

    def describe(self, inputs: object) -> str:
        chars = {WALL: "#", OPEN: ".", START: "S", GOAL: "G"}
        grid = np.asarray(inputs)
        return "\n".join("".join(chars[int(v)] for v in row) for row in grid)


def _goal_reached(grids: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """Vectorised :func:`follow_route`: grids (B, S, S), moves (B, P, T) -> bool (B, T)."""
    batch, steps, ticks = moves.shape
    size = grids.shape[-1]
    flat = grids.reshape(batch, -1).long()
    start = (flat == START).long().argmax(1)
    row = (start // size)[:, None].expand(-1, ticks).clone()
    col = (start % size)[:, None].expand(-1, ticks).clone()
    table = torch.tensor(MOVES, device=moves.device)  # (5, 2)
    alive = torch.ones(batch, ticks, dtype=torch.bool, device=moves.device)
    reached = torch.zeros_like(alive)
    for p in range(steps):
        delta = table[moves[:, p, :]]  # (B, T, 2)
        nr, nc = row + delta[..., 0], col + delta[..., 1]
        inside = (nr >= 0) & (nr < size) & (nc >= 0) & (nc < size)
        code = flat.gather(1, (nr.clamp(0, size - 1) * size + nc.clamp(0, size - 1)))
        walkable = inside & (code != WALL)
        active = alive & ~reached
        alive = alive & (walkable | ~active)
        moving = active & walkable
        row, col = torch.where(moving, nr, row), torch.where(moving, nc, col)
        reached = reached | (moving & (code == GOAL))
    return reached
