"""Claim: on SearchQA-v0's default world the multi-hop oracle scores >= 0.95 EM on held-out
questions, answering without retrieval scores ~0, and one-shot retrieve-then-answer sits
in between (good on single-hop, poor on multi-hop).

Plays three scripted baselines (``thinkgym.agents.search_qa``) on the same questions —
indices ``0 .. episodes-1`` of ``--split`` (default: the held-out ``test`` split), in
``--blocks`` blocks of consecutive indices — through the env's own search (FAISS + the
default int8 MiniLM encoder) and scoring (rewards library):

* ``no_retrieval``: answers at once with a type-plausible guess (fictional name, year);
* ``retrieve_then_answer``: searches the question once, answers with the first
  right-typed span of the top passage;
* ``oracle``: knows the question templates (hop structure, not the answer), searches
  every hop's entity and reads the fact from that entity's passage.

Reports EM and F1 per question type, overall means with min / median over blocks,
searches per episode and mean return. Episodes are deterministic, so blocks differ only
by the questions drawn; wall time per episode is printed but is noise on a shared machine.

    python benchmarks/searchqa_baselines.py --json benchmarks/results/searchqa_baselines.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.search_qa import (
    EpisodeResult,
    NoRetrievalAgent,
    OracleAgent,
    RetrieveThenAnswerAgent,
    run_episode,
)
from thinkgym.envs.search_qa.questions import QTYPES

AGENTS = ("oracle", "retrieve_then_answer", "no_retrieval")


def _agent(name: str, seed: int) -> Any:
    if name == "oracle":
        return OracleAgent()
    if name == "retrieve_then_answer":
        return RetrieveThenAnswerAgent()
    return NoRetrievalAgent(seed=seed)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def evaluate(env: gym.Env, name: str, episodes: int, blocks: int) -> dict[str, Any]:
    """EM/F1 per type, per-block EM, searches and return of agent ``name``."""
    results: list[EpisodeResult] = []
    block_em: list[float] = []
    size = episodes // blocks
    start = time.perf_counter()
    for b in range(blocks):
        agent = _agent(name, seed=b)
        block = [run_episode(env, agent, index=i) for i in range(b * size, (b + 1) * size)]
        block_em.append(_mean([r.exact_match for r in block]))
        results.extend(block)
    seconds = time.perf_counter() - start
    by_type: dict[str, dict[str, float]] = {}
    groups: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        groups[r.question_type].append(r)
    for qtype in QTYPES:
        group = groups.get(qtype, [])
        by_type[qtype] = {"n": len(group), "em": _mean([r.exact_match for r in group]),
                          "f1": _mean([r.f1 for r in group])}
    return {
        "em": _mean([r.exact_match for r in results]),
        "f1": _mean([r.f1 for r in results]),
        "em_block_min": min(block_em), "em_block_median": statistics.median(block_em),
        "searches_per_episode": _mean([r.searches for r in results]),
        "turns_per_episode": _mean([r.turns for r in results]),
        "mean_return": _mean([r.reward for r in results]),
        "by_type": by_type, "episodes": len(results),
        "seconds_per_episode": seconds / max(1, len(results)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=600, help="questions per agent")
    parser.add_argument("--blocks", type=int, default=3, help="blocks of consecutive indices")
    parser.add_argument("--split", default="test", choices=["train", "test", "easy"])
    parser.add_argument("--num-passages", type=int, default=None,
                        help="world size (default: the env's default world)")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS,
                        help="which baselines to play")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    kwargs: dict[str, Any] = {"split": args.split}
    if args.num_passages is not None:
        kwargs["num_passages"] = args.num_passages
    t0 = time.perf_counter()
    env = gym.make("SearchQA-v0", **kwargs)
    make_seconds = time.perf_counter() - t0
    config = env.unwrapped.config  # type: ignore[attr-defined]
    print(f"SearchQA-v0 split={config.split} world={config.num_passages} passages "
          f"(seed {config.world_seed}) top_k={config.top_k} encoder={config.retriever.encoder}; "
          f"make {make_seconds:.1f}s")

    figures: dict[str, Any] = {}
    for name in args.agents:
        figures[name] = evaluate(env, name, args.episodes, args.blocks)

    header = f"{'agent':<22}{'EM':>6}{'F1':>6}" + "".join(f"{q:>12}" for q in QTYPES) + \
        f"{'blk min/med':>13}{'search':>8}{'return':>8}{'s/ep':>7}"
    print(header)
    print("-" * len(header))
    for name, fig in figures.items():
        types = "".join(f"{fig['by_type'][q]['em']:>12.3f}" for q in QTYPES)
        print(f"{name:<22}{fig['em']:>6.3f}{fig['f1']:>6.3f}{types}"
              f"{fig['em_block_min']:>7.3f}/{fig['em_block_median']:.3f}"
              f"{fig['searches_per_episode']:>8.2f}{fig['mean_return']:>8.3f}"
              f"{fig['seconds_per_episode']:>7.2f}")
    print("(per-type columns: EM)")

    if args.json is not None:
        out = {f"{name}_{key}": value for name, fig in figures.items()
               for key, value in fig.items()}
        out.update({"split": config.split, "num_passages": config.num_passages,
                    "world_seed": config.world_seed, "top_k": config.top_k,
                    "encoder": config.retriever.encoder, "episodes": args.episodes,
                    "blocks": args.blocks, "make_seconds": make_seconds})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
