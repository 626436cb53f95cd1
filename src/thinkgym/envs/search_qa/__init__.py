"""SearchQA-v0: search or answer over a procedural knowledge world.

* :mod:`~thinkgym.envs.search_qa.env` — ``SearchQAEnv`` and its config, the Search-R1
  protocol, rewards;
* :mod:`~thinkgym.envs.search_qa.knowledge` — ``KnowledgeWorld``: fictional entities,
  facts and passages (the corpus), with :mod:`~thinkgym.envs.search_qa.names` (unique
  syllable names), :mod:`~thinkgym.envs.search_qa.schema` (the facts and ``read_fact``)
  and :mod:`~thinkgym.envs.search_qa.questions` (multi-hop questions, the held-out split,
  ``parse_question``).
"""

from __future__ import annotations

from thinkgym.envs.search_qa.env import (
    DEFAULT_REWARDS,
    ParsedAction,
    SearchQAConfig,
    SearchQAEnv,
    build_prompt,
    parse_action,
    read_passages,
)

__all__ = ["DEFAULT_REWARDS", "ParsedAction", "SearchQAConfig", "SearchQAEnv", "build_prompt",
           "parse_action", "read_passages"]
