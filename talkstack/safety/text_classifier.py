"""The open text-safety classifier of input moderation: IBM Granite Guardian 3.2 5B (Apache-2.0).

Granite Guardian is an LLM fine-tuned to answer one question about a message with a single token,
"Yes" (the risk is present) or "No"; which risk is asked is chosen in its chat template
(`guardian_config={"risk_name": …}`: harm, social_bias, jailbreak, violence, profanity,
sexual_content, unethical_behavior). A risk's probability is the softmax of the last position's
"Yes" and "No" logits after the prompt: one forward pass per (text, risk), no generation, batched
with left padding. The policy maps risks to its categories (`classifier_risks`) and sets the
threshold (talkstack/safety/policy.py).

Runs on a Modal GPU (modal_workers/text_safety.py); the Moderate state calls it with a bounded
wait. Tested on a tiny random-weight Granite built from a config (tests/unit/test_text_classifier.py).
Why this model and not another: docs/safety.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEXT_SAFETY_MODEL = "ibm-granite/granite-guardian-3.2-5b"
"""The Hugging Face id, recorded in every verdict the classifier took part in."""
TEXT_SAFETY_APP = "talkstack-text-safety"
TEXT_SAFETY_CLASS = "TextSafety"
TEXT_SAFETY_METHOD = "score"
RISKS: tuple[str, ...] = (
    "harm",
    "social_bias",
    "jailbreak",
    "violence",
    "profanity",
    "sexual_content",
    "unethical_behavior",
)
"""The risk names Granite Guardian 3.2's chat template knows."""
YES, NO = "Yes", "No"
MAX_TOKENS = 2048
"""The longest prompt the scorer builds. A text is scored in windows of WINDOW_TOKENS so that its
prompt stays below this; should a prompt still be longer, it is cut from the left, never the
right: the answer is read at the prompt's last position."""
WINDOW_TOKENS = 1024
"""A text longer than this many tokens is scored in overlapping windows of it, and its risk is the
highest window's. A 5,000-character script of emoji or CJK characters tokenises to several
thousand tokens: cutting it to fit would leave part of it unjudged (or, cut from the right, the
question and the answer position off the prompt)."""
WINDOW_OVERLAP = 64
"""Tokens each window shares with the one before it, so a phrase across a boundary is seen whole."""


def _first_token(tokenizer: Any, word: str) -> int:
    ids = tokenizer.encode(word, add_special_tokens=False)
    if not ids:
        raise ValueError(f"the tokenizer has no token for {word!r}")
    return int(ids[0])


class GuardianScorer:
    """A loaded Granite Guardian (or any causal LM whose template asks a yes/no risk question)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # the last position is the answer's for every row
        tokenizer.truncation_side = "left"  # and stays so if a prompt is ever cut
        self.yes, self.no = _first_token(tokenizer, YES), _first_token(tokenizer, NO)

    @classmethod
    def load(cls, folder: Path, device: str = "cuda") -> GuardianScorer:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
        return cls(model, tokenizer)

    def _prompt(self, text: str, risk: str) -> str:
        messages = [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(
            messages, guardian_config={"risk_name": risk}, add_generation_prompt=True, tokenize=False
        )

    def _windows(self, text: str) -> list[str]:
        """The text in pieces of at most WINDOW_TOKENS tokens (itself when it is that short)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= WINDOW_TOKENS:
            return [text]
        stride = WINDOW_TOKENS - WINDOW_OVERLAP
        starts = range(0, len(ids) - WINDOW_OVERLAP, stride)
        return [self.tokenizer.decode(ids[start : start + WINDOW_TOKENS]) for start in starts]

    def score_each(self, texts: Sequence[str], risk: str) -> list[float]:
        """P("Yes") for each text, on this one risk (a long text's: its highest window's)."""
        if not texts:
            return []
        windows = [self._windows(text) for text in texts]
        scores = iter(self._score_prompts([self._prompt(w, risk) for ws in windows for w in ws]))
        return [max(next(scores) for _ in ws) for ws in windows]

    def _score_prompts(self, prompts: list[str]) -> list[float]:
        import torch

        batch = self.tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            add_special_tokens=False,  # the template wrote them
        ).to(self.model.device)
        with torch.inference_mode():
            logits = self.model(**batch).logits[:, -1, :]
        pair = torch.stack([logits[:, self.yes], logits[:, self.no]], dim=-1).float()
        return [float(p) for p in torch.softmax(pair, dim=-1)[:, 0].cpu()]

    def score(self, texts: Sequence[str], risks: Sequence[str]) -> dict[str, float]:
        """The highest probability of each risk over all `texts` (what the policy judges by)."""
        unknown = sorted(set(risks) - set(RISKS))
        if unknown:
            raise ValueError(f"unknown risks {unknown}; the classifier knows {list(RISKS)}")
        return {risk: max(self.score_each(texts, risk), default=0.0) for risk in risks}
