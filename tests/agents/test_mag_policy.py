from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.mag import MAGConfig, MAGPolicy, MAGPolicyConfig, episode_tokens
from thinkgym.agents.mag.search_qa import HopSearchAgent, MAGSearchAgent, log_episode
from thinkgym.agents.search_qa import run_episode
from thinkgym.agents.tiny import load_tiny_model
from thinkgym.errors import CheckpointError, ConfigError

SMALL = MAGPolicyConfig(block=MAGConfig(d_model=16, num_heads=2, window=16, chunk_size=8,
                                        memory_hidden=16), head_hidden=16)


@pytest.fixture(scope="module")
def env():
    e = gym.make("SearchQA-v0", split="train", top_k=1)
    yield e
    e.close()


@pytest.fixture(scope="module")
def episode(env):
    return log_episode(env, 3, budget=4)


@pytest.fixture
def policy():
    torch.manual_seed(0)
    lm, tok = load_tiny_model()
    return MAGPolicy(lm, tok, SMALL).eval()


def test_logged_episode_has_a_candidate_and_label_per_step(episode) -> None:
    assert episode.num_steps == 4
    assert len(episode.candidates) == len(episode.correct) == 4
    assert all(a.startswith("<think>") and "<search>" in a for a in episode.actions)
    assert all("<information>" in o for o in episode.observations)
    assert episode.correct[-1]  # the hop searcher resolves this two-hop question


def test_transcript_never_shows_the_answer_in_an_action(env) -> None:
    """Searches name entities: a check search of the resolved entity looks like a hop."""
    ep = log_episode(env, 0, budget=4)
    thoughts = {a.split("</think>")[0] for a in ep.actions}
    assert len(thoughts) == 1  # the same thought before every search
    assert all(a.count("<search>") == 1 and "<answer>" not in a for a in ep.actions)
    agent = HopSearchAgent()
    agent.observe(ep.prompt)
    assert agent.candidate() is None  # no candidate before the first search


def test_offline_and_online_detection_agree(policy, episode) -> None:
    steps = list(zip(episode.actions, episode.observations, strict=True))
    ids, ends, mask = episode_tokens(policy.tokenizer, episode.prompt, steps)
    assert len(ends) == 4
    assert ends[-1] == len(ids) - 1
    assert sum(mask) > 0
    frac = torch.tensor([[(k + 1) / 4 for k in range(4)]])
    with torch.no_grad():
        det = policy(torch.tensor([ids]), torch.tensor([ends]), frac)
    policy.start(episode.prompt)
    online = [policy.step(a, o, (k + 1) / 4) for k, (a, o) in enumerate(steps)]
    assert [d.value for d in online] == pytest.approx(det.value[0].tolist(), abs=1e-4)
    assert [d.stop_value for d in online] == pytest.approx(det.stop_value[0].tolist(), abs=1e-4)
    assert [d.entropy for d in online] == pytest.approx(det.entropy[0].tolist(), abs=1e-4)
    for d in online:
        assert d.threshold == pytest.approx(SMALL.base_threshold * (1 + d.entropy))
        assert d.stop == (d.value - d.stop_value < d.threshold)


def test_online_memory_persists_within_an_episode_and_resets(policy, episode) -> None:
    policy.start(episode.prompt)
    policy.step(episode.actions[0], episode.observations[0], 0.25)
    written = policy.block.state.memory.w1.clone()
    assert not torch.allclose(written, policy.block.memory.w1_0)
    policy.reset()
    assert policy.block.state is None
    with pytest.raises(ConfigError, match="start"):
        policy.step("a", "b", 0.5)


def test_agent_stops_by_the_detection_channel(env, policy) -> None:
    agent = MAGSearchAgent(policy, budget=4)
    policy.config = MAGPolicyConfig(block=SMALL.block, base_threshold=1e6)  # always stop
    result = run_episode(env, agent, seed=3)
    assert result.searches == 1
    assert len(agent.decisions) == 1
    assert agent.decisions[0].stop
    policy.config = MAGPolicyConfig(block=SMALL.block, base_threshold=0.0)
    with torch.no_grad():  # V - U >= 0 never holds below 0: make continuing always win
        policy.head.net[-1].bias.copy_(torch.tensor([10.0, -10.0]))
    result = run_episode(env, agent, seed=3)
    assert result.searches == 4
    assert result.exact_match == 1.0


def test_save_and_load_round_trip(tmp_path, policy, episode) -> None:
    from thinkgym.agents.tiny import tiny_model_path

    policy.save(tmp_path / "mag", lm_source=str(tiny_model_path()))
    loaded = MAGPolicy.load(tmp_path / "mag").eval()
    ids, ends, _ = episode_tokens(policy.tokenizer, episode.prompt,
                                  list(zip(episode.actions, episode.observations, strict=True)))
    args = (torch.tensor([ids]), torch.tensor([ends]), torch.ones(1, len(ends)))
    with torch.no_grad():
        assert torch.allclose(policy(*args).value, loaded(*args).value, atol=1e-6)
    with pytest.raises(CheckpointError, match="mag_config"):
        MAGPolicy.load(tmp_path)
