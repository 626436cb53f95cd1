"""Protocol tags as plain text on real tokenizers: stop rules, masks and chat templates.

Two tokenizers that split the tags into several ordinary tokens: SmolLM2-135M-Instruct's
(a real instruct model's, from the ``smollm2`` extra) and a Qwen2 byte-level BPE trained
here without the tags (Qwen2's pre-tokenizer, the one R1-Distill-Qwen uses).
"""

from __future__ import annotations

import gymnasium as gym
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.llm import PROTOCOL_TAGS, TurnBuilder, encode_prompt
from thinkgym.rewards.masking import env_token_mask, tokenizer_offsets

AGENT = "<think>I need the capital.</think>\n<search>capital of France</search>"
OBS = "\n<information>\nParis is the capital of France.\n</information>\n"
ANSWER = "<think>It says Paris.</think>\n<answer>Paris</answer>"


def _qwen2_tokenizer():
    from transformers import Qwen2Tokenizer

    corpus = ["Paris is the capital of France. The answer is Paris.",
              "search information answer think <> </> capital"] * 30
    tok = Qwen2Tokenizer().train_new_from_iterator(corpus, vocab_size=400,
                                                   new_special_tokens=["<eos>"])
    tok.eos_token = "<eos>"
    return tok


@pytest.fixture(scope="module", params=["smollm2", "qwen2"])
def tokenizer(request):
    if request.param == "qwen2":
        return _qwen2_tokenizer()
    request.getfixturevalue("needs_smollm2")
    from transformers import AutoTokenizer

    from thinkgym.agents.models import resolve_alias

    return AutoTokenizer.from_pretrained(resolve_alias("smollm2-135m-instruct"))


def test_tags_are_several_tokens_that_decode_back(tokenizer) -> None:
    multi = [t for t in PROTOCOL_TAGS if len(tokenizer.encode(t, add_special_tokens=False)) > 1]
    assert multi, "the point of these tests is tags that are not single tokens"
    for tag in PROTOCOL_TAGS:
        ids = tokenizer.encode(tag, add_special_tokens=False)
        assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == tag


def test_turn_stops_right_after_a_tag_split_over_tokens(tokenizer) -> None:
    text = ANSWER + " and then more words the model would ramble"
    ids = tokenizer.encode(text, add_special_tokens=False)
    _, offsets = tokenizer_offsets(text, tokenizer)
    close = text.index("</answer>")
    inside = [i for i, (a, b) in enumerate(offsets) if a < close + 9 and b > close]
    assert len(inside) > 1  # the closing tag really is split
    turn = TurnBuilder(tokenizer, max_new_tokens=len(ids))
    for tok in ids:
        if turn.add(tok, 0.0):
            break
    out = turn.finish()
    assert out.stop == "stop_string"
    assert "</answer>" in out.text
    shorter = tokenizer.decode(out.ids[:-1], clean_up_tokenization_spaces=False)
    assert "</answer>" not in shorter  # stopped at the first token that completes the tag
    assert len(out.ids) < len(ids)


def test_offset_masks_never_train_on_env_text_at_tag_seams(tokenizer) -> None:
    transcript = AGENT + OBS + ANSWER
    span = (len(AGENT), len(AGENT) + len(OBS))
    ids, mask = env_token_mask(transcript, [span], tokenizer)
    _, offsets = tokenizer_offsets(transcript, tokenizer)
    for (a, b), m in zip(offsets, mask, strict=True):
        overlaps = a < span[1] and b > span[0]
        assert m == (0 if overlaps else 1)  # a token straddling a seam counts as env text
    env_chars = "".join(transcript[a:b] for (a, b), m in zip(offsets, mask, strict=True) if not m)
    assert OBS.strip() in env_chars
    assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == transcript


def test_rollout_layout_masks_exactly_the_env_text(tokenizer) -> None:
    # The rollout never re-tokenises a transcript: agent and env text are encoded apart,
    # so the mask follows who wrote each token, whatever the tokenizer would merge.
    parts = [(AGENT, 1), (OBS, 0), (ANSWER, 1)]
    ids, mask = [], []
    for text, m in parts:
        t = tokenizer_offsets(text, tokenizer)[0]
        ids += t
        mask += [m] * len(t)
    env = [i for i, m in zip(ids, mask, strict=True) if not m]
    agent = [i for i, m in zip(ids, mask, strict=True) if m]
    decode = lambda x: tokenizer.decode(x, clean_up_tokenization_spaces=False)  # noqa: E731
    assert decode(env) == OBS
    assert decode(agent) == AGENT + ANSWER
    assert decode(ids) == AGENT + OBS + ANSWER


def test_oracle_searchqa_episode_renders_with_plain_tags(tokenizer) -> None:
    from thinkgym.agents.search_qa import OracleAgent
    from thinkgym.training.sft import render_oracle_episode

    if tokenizer.chat_template is None:
        tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                                   "{% endfor %}{% if add_generation_prompt %}assistant: "
                                   "{% endif %}")
    env = gym.make("SearchQA-v0", split="easy", top_k=1)
    ep = render_oracle_episode(env, OracleAgent(), tokenizer, seed=3)
    assert ep.decode_matches
    assert ep.reward_components["exact_match"] == 1.0
    decode = lambda x: tokenizer.decode(x, skip_special_tokens=True,  # noqa: E731
                                        clean_up_tokenization_spaces=False)
    env_text = decode([i for i, m in zip(ep.completion_ids, ep.env_mask, strict=True) if not m])
    assert env_text.count("<information>") == env_text.count("</information>") >= 1
    agent_text = decode([i for i, m in zip(ep.completion_ids, ep.env_mask, strict=True) if m])
    assert "<information>" not in agent_text
    assert "<search>" in agent_text
    assert "</answer>" in agent_text


@pytest.mark.usefixtures("needs_smollm2")
def test_instruct_template_renders_without_a_forced_think() -> None:
    from transformers import AutoTokenizer

    from thinkgym.agents.models import resolve_alias

    tok = AutoTokenizer.from_pretrained(resolve_alias("smollm2-135m-instruct"))
    enc = encode_prompt(tok, "What is 2 + 3?")
    text = tok.decode(enc.ids)
    assert enc.prefill_ids == ()
    assert enc.prefill_text == ""
    assert "<think>" not in text
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>" in text


def test_r1_template_keeps_its_think_prefill() -> None:
    from thinkgym.agents.tiny import load_tiny_model

    _, tok = load_tiny_model()
    enc = encode_prompt(tok, "What is 2 + 3?")
    assert enc.prefill_text.startswith("<think>")
    assert tok.decode(enc.ids).endswith("<｜Assistant｜>")
