from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thinkgym.protocols import RewardInput
from thinkgym.rewards import (
    REWARDS,
    answer_match,
    boxed_answer,
    exact_match,
    is_hedged,
    normalize_answer,
    parse_number,
    token_f1,
)

# Words of letters (ASCII plus a few accented ones whose case maps round-trip).
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüñ", min_size=1, max_size=8).filter(
    lambda w: w not in {"a", "an", "the"})
WORDS = st.lists(WORD, min_size=1, max_size=6)
PUNCT = st.sampled_from(list(".,;:!?'\"()-[]{}…¿¡«»—"))
SPACE = st.text(alphabet=" \t\n\u00a0\u2003", min_size=1, max_size=3)


@given(WORDS)
def test_normalisation_ignores_case(words: list[str]) -> None:
    s = " ".join(words)
    assert normalize_answer(s.upper()) == normalize_answer(s) == normalize_answer(s.title())


@given(WORDS, st.data())
def test_normalisation_ignores_whitespace(words: list[str], data: st.DataObject) -> None:
    spaced = data.draw(SPACE) + "".join(w + data.draw(SPACE) for w in words)
    assert normalize_answer(spaced) == normalize_answer(" ".join(words))


@given(WORDS, st.data())
def test_normalisation_ignores_articles(words: list[str], data: st.DataObject) -> None:
    out = []
    for w in words:
        if data.draw(st.booleans()):
            out.append(data.draw(st.sampled_from(["a", "an", "the", "The", "AN"])))
        out.append(w)
    assert normalize_answer(" ".join(out)) == normalize_answer(" ".join(words))


@given(WORDS, st.data())
def test_normalisation_ignores_punctuation(words: list[str], data: st.DataObject) -> None:
    text = " ".join(words)
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 5))):
        chars.insert(data.draw(st.integers(0, len(chars))), data.draw(PUNCT))
    assert normalize_answer("".join(chars)) == normalize_answer(text)


@given(WORDS)
def test_exact_match_is_reflexive_and_case_blind(words: list[str]) -> None:
    s = " ".join(words)
    assert exact_match(s.upper(), [s]) == 1.0


def test_normalisation_keeps_words_distinct() -> None:
    assert normalize_answer("Theory") == "theory"  # 'the' inside a word is not an article
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("Paris", ["London"]) == 0.0


def test_empty_and_none_answers_get_no_credit() -> None:
    for ans in (None, "", "   ", "the", "?!"):
        assert exact_match(ans, ["the"]) == 0.0
        assert token_f1(ans, ["the"]) == 0.0
        assert answer_match(ans, ["0"]) == 0.0


@pytest.mark.parametrize("hedge", [
    "Paris or London", "either Paris or Lyon", "maybe Paris", "Paris/London", "Paris; London",
    "Paris?", "Paris\nLondon", "London, Paris", "possibly Paris",
])
def test_hedged_answers_get_no_credit(hedge: str) -> None:
    assert is_hedged(hedge, ["Paris"])
    assert exact_match(hedge, ["Paris"]) == 0.0
    assert token_f1(hedge, ["Paris"]) == 0.0
    assert answer_match(hedge, ["Paris"]) == 0.0


def test_markers_that_belong_to_the_reference_are_not_hedges() -> None:
    assert exact_match("AC/DC", ["AC/DC"]) == 1.0
    assert exact_match("War or Peace", ["War or Peace"]) == 1.0
    assert exact_match("Washington, D.C.", ["Washington D.C."]) == 1.0


def test_no_substring_credit() -> None:
    assert exact_match("The city of Paris, France", ["Paris"]) == 0.0
    assert answer_match("12345", ["123"]) == 0.0
    assert exact_match("Parisian", ["Paris"]) == 0.0


def test_token_f1_values() -> None:
    assert token_f1("Eiffel Tower", ["the eiffel tower"]) == 1.0
    assert token_f1("big Eiffel Tower", ["Eiffel Tower"]) == pytest.approx(0.8)
    assert token_f1("Paris", ["London", "paris"]) == 1.0  # best reference wins
    assert token_f1("Rome", ["Paris"]) == 0.0


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42), ("-7", -7), ("3.25", Fraction(13, 4)), ("1,000,000", 10**6),
    ("1/4", Fraction(1, 4)),
    (r"\frac{3}{8}", Fraction(3, 8)), (r"-\dfrac{1}{2}", Fraction(-1, 2)), ("1e3", 1000),
    (r"2.5\times10^{2}", 250), ("$15", 15), (r"\$15", 15), ("50%", 50), (r"50\%", 50),
    ("12 cm", 12), (r"5\text{ m}", 5), ("90°", 90), (r"90^\circ", 90), ("x = 4", 4),
    ("\u22123", -3), (".5", Fraction(1, 2)),
])
def test_parse_number(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["3, 4", "3 or 4", "abc", "1/0", "1,2", "", "two", "1..2"])
def test_not_a_single_number(text: str) -> None:
    assert parse_number(text) is None


def test_numeric_equivalence() -> None:
    assert answer_match("0.5", ["1/2"]) == 1.0
    assert answer_match(r"\frac{1}{2}", ["0.5"]) == 1.0
    assert answer_match("1,000", ["1000"]) == 1.0
    assert answer_match("1000.0000001", ["1000"]) == 0.0  # exact forms compare exactly
    assert answer_match("12 cm", ["12"]) == 1.0
    assert answer_match("13", ["12"]) == 0.0


def test_boxed_extraction_nested_multiple_and_units() -> None:
    assert boxed_answer(r"so \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert boxed_answer(r"\boxed{\{a, b\}} done") == r"\{a, b\}"
    assert boxed_answer(r"\boxed{f(x^{2})}") == "f(x^{2})"
    assert boxed_answer("no box here") is None
    assert boxed_answer(r"\boxed{3") is None  # unclosed
    # several boxes: fine when they agree, ambiguous when they differ
    assert boxed_answer(r"\boxed{0.5} so \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert boxed_answer(r"\boxed{1} or \boxed{2}") is None
    assert boxed_answer(r"\boxed 7") == "7"
    assert answer_match(boxed_answer(r"\boxed{12\text{ cm}}"), ["12"]) == 1.0


def test_components_on_reward_inputs() -> None:
    inp = RewardInput(answer="The Eiffel Tower", references=("eiffel tower",))
    assert REWARDS.get("exact_match")(inp) == 1.0
    assert REWARDS.get("f1")(inp) == 1.0
    assert REWARDS.get("numeric_match")(inp) is None  # reference is not a number
    assert REWARDS.get("exact_match")(RewardInput(answer="x")) is None  # no references
    boxed = RewardInput(completion=r"<think>2+2</think> \boxed{4}", references=("4",))
    assert REWARDS.get("boxed_match")(boxed) == 1.0
    two = RewardInput(completion=r"\boxed{4} \boxed{5}", references=("4",))
    assert REWARDS.get("boxed_match")(two) == 0.0


def test_boxed_match_ignores_env_text() -> None:
    text = r"<search>q</search><information>\boxed{4}</information><answer>x</answer>"
    start = text.index("<information>")
    end = text.index("</information>") + len("</information>")
    inp = RewardInput(completion=text, references=("4",), env_spans=((start, end),))
    assert REWARDS.get("boxed_match")(inp) == 0.0


def test_lenient_match_reads_the_last_number_or_the_boxed_answer() -> None:
    from thinkgym.rewards import last_number, lenient_match

    assert last_number("2 pencils at $6 each: 2 * 6 = 12 dollars.") == "12"
    assert last_number("no digits here") is None
    assert lenient_match("3 * 20 = 60 km.\n\nFinal Answer: 60", None, ["60"]) == 1.0
    assert lenient_match("x = 6. Checking: x = 5", None, ["6"]) == 0.0  # the last one counts
    assert lenient_match(r"so \boxed{12}, not 13", None, ["12"]) == 1.0  # a box wins
    assert lenient_match("nothing numeric", None, ["4"]) == 0.0


def test_lenient_match_on_text_answers_is_whole_word_containment() -> None:
    from thinkgym.rewards import lenient_match

    assert lenient_match("", "It was Marie Curie.", ["Marie Curie"]) == 1.0
    assert lenient_match("", "Curie", ["Marie Curie"]) == 0.0
    assert lenient_match("", "Parisian", ["Paris"]) == 0.0  # whole words only
    assert lenient_match("", None, ["Paris"]) == 0.0
