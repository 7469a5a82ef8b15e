"""Word timings of a speech track: what captions are cut from.

A voice step writes them beside its audio (output role `words`, `words.json`); for speech that came
as audio, the compose step aligns the scene's transcript to it (talkstack/media/alignment.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, model_validator

from talkstack.contract.fields import Language, StrictModel


class WordTiming(StrictModel):
    word: Annotated[str, Field(min_length=1, max_length=200)]
    """As written in the text (punctuation kept, so captions read naturally)."""
    start_s: NonNegativeFloat
    end_s: NonNegativeFloat

    @model_validator(mode="after")
    def _ordered(self) -> WordTiming:
        if self.end_s < self.start_s:
            raise ValueError(f"end_s ({self.end_s}) is before start_s ({self.start_s})")
        return self


class SpeechTimings(StrictModel):
    """When each word of a speech track is spoken, in seconds from the track's start."""

    language: Language = "en"
    source: Literal["tts", "aligned", "asr"]
    """tts: the voice engine's own timings; aligned: the text aligned to the audio; asr: recognised."""
    duration_s: NonNegativeFloat
    words: list[WordTiming]
