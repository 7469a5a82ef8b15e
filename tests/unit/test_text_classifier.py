"""The text-safety classifier's scoring code on a tiny random-weight Granite (built from a config,
nothing downloaded) with a word-level tokenizer and a guardian-style chat template."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GraniteConfig, GraniteForCausalLM, PreTrainedTokenizerFast

from talkstack.safety.text_classifier import RISKS, GuardianScorer

WORDS = ["<pad>", "<eos>", "<unk>", "Yes", "No", "risk", "user", "answer", "hello", "there", "friend"]
WORDS += list(RISKS)
# The shape of Granite Guardian's template: the risk asked is chosen by guardian_config.
TEMPLATE = (
    "risk {{ guardian_config['risk_name'] }}{% for m in messages %} user {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} answer{% endif %}"
)


def tiny_guardian() -> GuardianScorer:
    torch.manual_seed(0)
    vocab = {word: index for index, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>", chat_template=TEMPLATE
    )
    config = GraniteConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return GuardianScorer(GraniteForCausalLM(config), tokenizer)


def test_a_risk_is_the_softmax_of_the_yes_and_no_logits_after_the_prompt():
    scorer = tiny_guardian()
    prompt = scorer._prompt("hello there", "violence")
    assert prompt == "risk violence user hello there answer"
    ids = scorer.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        last = scorer.model(**ids).logits[0, -1]
    expected = torch.softmax(torch.stack([last[3], last[4]]), dim=0)[0].item()  # Yes=3, No=4
    assert scorer.score_each(["hello there"], "violence") == pytest.approx([expected], abs=1e-6)


def test_left_padding_scores_each_text_as_if_alone():
    """Batched texts of different lengths get the scores each gets on its own: the answer is read
    at the last real token of every row (a right-padded batch would read padding)."""
    scorer = tiny_guardian()
    texts = ["hello", "hello there friend friend friend"]
    alone = [scorer.score_each([text], "harm")[0] for text in texts]
    assert scorer.score_each(texts, "harm") == pytest.approx(alone, abs=1e-5)
    assert alone[0] != pytest.approx(alone[1], abs=1e-6)  # the texts do differ to the model


def test_score_is_the_highest_over_texts_per_risk_and_names_only_known_risks():
    scorer = tiny_guardian()
    texts = ["hello", "there friend"]
    scores = scorer.score(texts, ["harm", "sexual_content"])
    assert set(scores) == {"harm", "sexual_content"}
    for risk, value in scores.items():
        assert value == pytest.approx(max(scorer.score_each(texts, risk)))
        assert 0.0 < value < 1.0
    with pytest.raises(ValueError, match="unknown risks"):
        scorer.score(texts, ["weather"])


def test_a_long_text_is_scored_in_windows_each_ending_on_the_answer(monkeypatch):
    """A text longer than a window is scored window by window (the highest counts), and every
    prompt the model sees still ends on the answer position: a prompt cut from the right would
    lose the question and read the risk off the text's own last token (padding a script with
    emoji would then blind the classifier)."""
    from talkstack.safety import text_classifier

    monkeypatch.setattr(text_classifier, "WINDOW_TOKENS", 3)
    monkeypatch.setattr(text_classifier, "WINDOW_OVERLAP", 1)
    monkeypatch.setattr(text_classifier, "MAX_TOKENS", 8)
    scorer = tiny_guardian()
    answer = scorer.tokenizer.convert_tokens_to_ids("answer")
    seen: list[int] = []
    forward = scorer.model.forward

    def spy(input_ids=None, **kw):
        seen.extend(row[-1] for row in input_ids.tolist())
        return forward(input_ids=input_ids, **kw)

    monkeypatch.setattr(scorer.model, "forward", spy)
    long = "hello there friend hello there friend hello"  # 7 tokens: windows of 3, 1 shared
    got = scorer.score_each([long, "hello"], "harm")
    windows = ["hello there friend", "friend hello there", "there friend hello"]
    assert seen and all(last == answer for last in seen)
    each = [scorer.score_each([window], "harm")[0] for window in windows]
    assert got[0] == pytest.approx(max(each), abs=1e-5)
    assert got[1] == pytest.approx(scorer.score_each(["hello"], "harm")[0], abs=1e-5)
