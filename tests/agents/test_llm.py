from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest

from thinkgym.agents import Policy
from thinkgym.agents.llm import (
    PROTOCOL_TAGS,
    DecodeSession,
    LLMPolicy,
    LLMPolicyConfig,
    encode_prompt,
    load_model_and_tokenizer,
    resolve_model_dir,
    sample_token,
)
from thinkgym.agents.tiny import tiny_model_path
from thinkgym.errors import CheckpointError, ConfigError, InvalidAction


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(tiny_model_path())


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_model_and_tokenizer(tiny_path)


class ScriptedLM:
    """A stand-in causal LM that samples a fixed token script (one token per forward call)."""

    def __init__(self, script: list[int], vocab: int) -> None:
        import torch

        self.script, self.vocab, self.calls, self.fed = list(script), vocab, 0, []
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.training = False

    def parameters(self):
        return iter([self.weight])

    def eval(self):
        return self

    def __call__(self, input_ids, past_key_values=None, use_cache=True, logits_to_keep=1):
        import torch

        self.fed.append(input_ids[0].tolist())
        logits = torch.zeros(1, 1, self.vocab)
        logits[0, -1, self.script[min(self.calls, len(self.script) - 1)]] = 50.0
        self.calls += 1
        return SimpleNamespace(logits=logits, past_key_values="cache")


# -- loading ---------------------------------------------------------------------------------
def test_missing_directory_names_the_path_and_the_fix(tmp_path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(CheckpointError) as err:
        resolve_model_dir(str(missing))
    msg = str(err.value)
    assert str(missing) in msg
    assert "--model" in msg
    assert "never downloads" in msg


def test_repo_id_not_in_the_local_cache_names_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        resolve_model_dir("thinkgym-tests/not-a-cached-model")
    msg = str(err.value)
    assert "Hugging Face cache" in msg
    assert "models--thinkgym-tests--not-a-cached-model" in msg
    assert "huggingface-cli download thinkgym-tests/not-a-cached-model" in msg


def test_directory_without_config_is_rejected(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        resolve_model_dir(tmp_path)


def _tagless_model_dir(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    tok = Qwen2Tokenizer().train_new_from_iterator(
        ["plain words only, no tags at all 123"] * 20, vocab_size=300,
        new_special_tokens=["<eos>"])
    tok.eos_token = "<eos>"
    tok.pad_token = None
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1))
    tok.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    return len(tok)


def test_tags_stay_plain_text_by_default(tmp_path, caplog) -> None:
    size = _tagless_model_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="thinkgym.agents.llm"):
        model, tok = load_model_and_tokenizer(str(tmp_path))
    assert "no pad token" in caplog.text
    assert "no single token" not in caplog.text
    assert len(tok) == size  # no vocabulary resize
    assert model.get_input_embeddings().num_embeddings == size
    assert tok.pad_token == "<eos>"
    # a tag is several ordinary tokens that decode back to the tag
    ids = tok.encode("<search>", add_special_tokens=False)
    assert len(ids) > 1
    assert tok.decode(ids) == "<search>"


def test_protocol_tokens_are_added_only_when_asked(tmp_path, caplog) -> None:
    import torch

    size = _tagless_model_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="thinkgym.agents.llm"):
        model, tok = load_model_and_tokenizer(str(tmp_path), add_protocol_tokens=True)
    text = caplog.text
    assert "no single token" in text
    assert "<search>" in text
    assert len(tok) == size + len(PROTOCOL_TAGS)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    ids = tok.encode("<think>a</think><answer>b</answer>", add_special_tokens=False)
    assert len(ids) == 6
    assert model(input_ids=torch.tensor([ids])).logits.shape[-1] == len(tok)


def test_rope_scaling_is_passed_through(tiny_path) -> None:
    import torch

    plain, tok = load_model_and_tokenizer(tiny_path)
    scaled, _ = load_model_and_tokenizer(tiny_path, rope_scaling={"rope_type": "linear",
                                                                  "factor": 4.0})
    params = scaled.config.rope_parameters
    assert params["rope_type"] == "linear"
    assert params["factor"] == 4.0
    ids = torch.tensor([tok.encode("The Louvre is a museum in Paris. " * 4,
                                   add_special_tokens=False)])
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=ids).logits, scaled(input_ids=ids).logits)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="top_p"):
        LLMPolicyConfig(top_p=0.0)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        LLMPolicyConfig(max_new_tokens=4096, max_context_tokens=4096)
    with pytest.raises(ConfigError, match="temperature"):
        LLMPolicyConfig(temperature=-1)


# -- prompts ---------------------------------------------------------------------------------
def test_r1_generation_prompt_is_split_at_the_think_prefill(tiny) -> None:
    _, tok = tiny
    enc = encode_prompt(tok, "What is 2+2?")
    assert enc.prefill_text == "<think>\n"
    assert tok.decode(list(enc.ids)).endswith("<｜User｜>What is 2+2?<｜Assistant｜>")
    assert tok.decode(list(enc.ids + enc.prefill_ids)) == tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True)
    assert enc.truncated_tokens == 0


def test_long_prompt_is_cut_from_the_left_keeping_system_and_template(tiny, caplog) -> None:
    _, tok = tiny
    prompt = "OPENING " + "filler words here " * 200 + "Question: what is the capital?"
    with caplog.at_level(logging.WARNING, logger="thinkgym.agents.llm"):
        enc = encode_prompt(tok, prompt, system_prompt="SYSTEM RULES.", max_tokens=60)
    assert "exceeds the budget" in caplog.text
    assert len(enc.ids) + len(enc.prefill_ids) <= 60
    assert enc.truncated_tokens > 0
    text = tok.decode(list(enc.ids))
    assert text.startswith("<｜begin▁of▁sentence｜>SYSTEM RULES.<｜User｜>")
    assert text.endswith("Question: what is the capital?<｜Assistant｜>")
    assert "OPENING" not in text
    with pytest.raises(ConfigError, match="max_tokens"):
        encode_prompt(tok, prompt, system_prompt="SYSTEM RULES. " * 20, max_tokens=20)


# -- sampling --------------------------------------------------------------------------------
def test_sample_token_logprob_temperature_and_top_p() -> None:
    import torch

    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    tok, lp = sample_token(logits, 0.0, 1.0)
    assert tok == 0
    assert lp == pytest.approx(float(torch.log_softmax(logits, -1)[0]))
    gen = torch.Generator().manual_seed(0)
    seen = {sample_token(logits, 0.7, 0.5, gen)[0] for _ in range(50)}
    assert seen == {0}  # top token alone holds > 50% of the mass at T=0.7
    gen = torch.Generator().manual_seed(0)
    draws = [sample_token(logits, 2.0, 1.0, gen) for _ in range(200)]
    assert len({t for t, _ in draws}) == 4
    ref = torch.log_softmax(logits / 2.0, -1)
    assert all(lp == pytest.approx(float(ref[t])) for t, lp in draws)


def test_turn_stops_after_a_closing_tag_even_when_split_over_tokens(tiny) -> None:
    _, tok = tiny
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    split_tag = enc("</") + enc("sea") + enc("rch") + enc(">")
    assert len(split_tag) >= 4
    script = enc("<search>") + enc(" Paris") + split_tag + enc(" never reached")
    lm = ScriptedLM(script, len(tok))
    turn = DecodeSession(lm, [1, 2]).sample(tok, 50, temperature=1.0, top_p=1.0)
    assert turn.stop == "stop_string"
    assert turn.text == "<search> Paris</search>"
    assert turn.ids == script[: len(turn.ids)]
    assert all(math.isclose(lp, 0.0, abs_tol=1e-6) for lp in turn.logprobs)  # prob ~1


def test_turn_stops_at_eos_and_at_the_token_limit(tiny) -> None:
    _, tok = tiny
    words = tok.encode(" a b c d e f", add_special_tokens=False)
    lm = ScriptedLM([*words[:2], tok.eos_token_id, *words[2:]], len(tok))
    session = DecodeSession(lm, [1])
    turn = session.sample(tok, 50, temperature=1.0, top_p=1.0, eos_ids=[tok.eos_token_id])
    assert turn.stop == "eos"
    assert turn.ids[-1] == tok.eos_token_id
    assert turn.text == tok.decode(words[:2])  # eos is skipped in the text
    turn = session.sample(tok, 3, temperature=1.0, top_p=1.0, eos_ids=[tok.eos_token_id])
    assert turn.stop == "length"
    assert len(turn.ids) == 3
    # env tokens and the last sampled token go to the model in one forward pass
    session.extend([7, 8])
    session.next_logits()
    assert lm.fed[-1] == [turn.ids[-1], 7, 8]


def test_kv_cache_across_turns_matches_a_full_forward(tiny) -> None:
    import torch

    model, tok = tiny
    model.eval()
    session = DecodeSession(model, tok.encode("Question: where?", add_special_tokens=False))
    gen = torch.Generator().manual_seed(0)
    session.sample(tok, 5, temperature=1.0, top_p=1.0, generator=gen)
    session.extend(tok.encode("<information>doc</information>", add_special_tokens=False))
    cached = session.next_logits()
    with torch.no_grad():
        full = model(input_ids=torch.tensor([session.ids])).logits[0, -1]
    assert torch.allclose(cached, full, atol=1e-4)


def test_policy_acts_over_turns_and_is_seeded(tiny, tiny_path) -> None:
    model, tok = tiny
    cfg = LLMPolicyConfig(model=tiny_path, max_new_tokens=12, seed=5, temperature=1.0)
    policy = LLMPolicy(model, tok, cfg)
    assert isinstance(policy, Policy)
    first = policy.act("Task: say hi.")
    assert first.startswith("<think>\n")
    second = policy.act("<information>doc</information>")
    assert not second.startswith("<think>\n")
    again = LLMPolicy(model, tok, cfg)
    assert again.act("Task: say hi.") == first
    with pytest.raises(InvalidAction):
        policy.act(3)


def test_policy_drops_old_turns_when_the_context_is_full(tiny, tiny_path, caplog) -> None:
    model, tok = tiny
    cfg = LLMPolicyConfig(model=tiny_path, max_new_tokens=8, max_context_tokens=80, seed=0)
    policy = LLMPolicy(model, tok, cfg)
    policy.act("Task: keep going.")
    head = list(policy._session.ids[: policy._head])
    with caplog.at_level(logging.WARNING, logger="thinkgym.agents.llm"):
        for i in range(6):
            policy.act(f"<information>observation number {i} " + "word " * 10 + "</information>")
    assert "dropping the" in caplog.text
    assert len(policy._session.ids) <= 80
    assert policy._session.ids[: len(head)] == head  # the prompt is never dropped


def test_policy_load_uses_the_local_directory(tiny_path) -> None:
    policy = LLMPolicy.load(LLMPolicyConfig(model=tiny_path, max_new_tokens=4, seed=0))
    assert not policy.model.training
    assert isinstance(policy.act("Hi"), str)
