"""The composition's soundtrack: each scene's own sound at its start, music under it, ducked
while someone speaks; one mono WAV at SAMPLE_RATE, muxed into the MP4 as AAC.

- Scene sound: an avatar render's speech, a video upload's sound (keep_audio). Across a cut each
  side gets a 5 ms edge fade (no click, no gap); across a crossfade or fade the two sounds overlap
  for the transition with an equal-power crossfade, so speech that runs on is never dropped.
- Music: the scene's own (input scene_<i>_music) over its span, or the composition's (`music`)
  over the rest, looped to length, faded in and out, at `volume_db`.
- Ducking: the music's gain follows the speech's loudness envelope (librosa RMS, 10.7 ms hops):
  where the envelope is above SPEECH_DBFS, the gain goes down by `duck_db`, with a short attack
  and a slower release, and gaps between words shorter than HOLD_S keep it down (no pumping).
  A gain curve was chosen over ffmpeg's sidechaincompress because it lowers the music by exactly
  `duck_db` whatever the music's level, which is what the request promises (a compressor's
  reduction depends on its threshold, ratio and the music's own loudness).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkstack.compose.sources import SAMPLE_RATE, is_video_file, read_sound
from talkstack.compose.timeline import Timeline
from talkstack.contract.composition import ComposeScene, MediaSource, Music, scene_role
from talkstack.media.audio import write_wav

EDGE_S = 0.005
"""Fade at a scene's sound edges on a cut (a click otherwise)."""
SPEECH_DBFS = -40.0
"""Speech envelope level above which the music ducks."""
HOLD_S = 0.35
ATTACK_S = 0.06
RELEASE_S = 0.4
MUSIC_FADE_IN_S = 0.5
MUSIC_FADE_OUT_S = 1.0
SCENE_MUSIC_FADE_S = 0.3
HOP = 512
FRAME = 2048


@dataclass
class Soundtrack:
    mix: np.ndarray
    speech: np.ndarray
    """The scenes' own sound only (what ducks the music)."""
    scene_sounds: dict[int, np.ndarray] = field(default_factory=dict)
    """Each scene's sound as placed (trimmed to the scene), by scene index."""
    rate: int = SAMPLE_RATE

    @property
    def audible(self) -> bool:
        return bool(np.any(np.abs(self.mix) > 1e-4))


def scene_sound(
    scene: ComposeScene, index: int, inputs: dict[str, Path], seconds: float
) -> np.ndarray | None:
    """Scene `index`'s own sound, `seconds` long at most (None: it has none)."""
    source = scene.scene.source
    if scene.rendered:
        return read_sound(inputs[scene_role(index, "video")], duration_s=seconds)
    if isinstance(source, MediaSource) and source.keep_audio:
        media = inputs[scene_role(index, "media")]
        if is_video_file(media):
            return read_sound(media, start_s=source.start_s, duration_s=seconds)
    return None


def _ramp(n: int, rising: bool, equal_power: bool) -> np.ndarray:
    x = (np.arange(n, dtype=np.float32) + 0.5) / max(1, n)
    curve = np.sin(x * np.pi / 2) if equal_power else x
    return curve if rising else curve[::-1]


def _edges(sound: np.ndarray, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    out = sound.copy()
    for seconds, rising in ((fade_in_s, True), (fade_out_s, False)):
        crossfade = seconds > 0
        n = min(len(out), round((seconds if crossfade else EDGE_S) * SAMPLE_RATE))
        if n <= 0:
            continue
        ramp = _ramp(n, rising, equal_power=crossfade)
        if rising:
            out[:n] *= ramp
        else:
            out[len(out) - n :] *= ramp
    return out


def music_bed(path: Path, samples: int, volume_db: float, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """The music file looped to `samples`, faded in and out, at `volume_db`."""
    music = read_sound(path)
    if music is None or len(music) == 0:
        return np.zeros(samples, np.float32)
    bed = np.tile(music, samples // len(music) + 1)[:samples].astype(np.float32)
    bed = _edges_simple(bed, fade_in_s, fade_out_s)
    return bed * np.float32(10 ** (volume_db / 20))


def _edges_simple(bed: np.ndarray, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    n_in = min(len(bed) // 2, int(fade_in_s * SAMPLE_RATE))
    n_out = min(len(bed) // 2, int(fade_out_s * SAMPLE_RATE))
    if n_in:
        bed[:n_in] *= _ramp(n_in, True, False)
    if n_out:
        bed[len(bed) - n_out :] *= _ramp(n_out, False, False)
    return bed


def speech_envelope(speech: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per sample, 0..1: how much the music ducks (1 = fully, under speech)."""
    import librosa

    if len(speech) == 0:
        return np.zeros(0, np.float32)
    rms = librosa.feature.rms(y=speech, frame_length=FRAME, hop_length=HOP, center=True)[0]
    active = 20 * np.log10(np.maximum(rms, 1e-9)) > SPEECH_DBFS
    hop_s = HOP / rate
    # Bridge the short pauses between words.
    hold = int(HOLD_S / hop_s)
    last = -(10**9)
    held = active.copy()
    for i, on in enumerate(active):
        if on:
            if 0 < i - last <= hold:
                held[last:i] = True
            last = i
    # Attack and release: a one-pole follower over the frames.
    attack, release = 1 - np.exp(-hop_s / ATTACK_S), 1 - np.exp(-hop_s / RELEASE_S)
    envelope = np.empty(len(held), np.float32)
    level = 0.0
    for i, on in enumerate(held):
        target = 1.0 if on else 0.0
        level += (target - level) * (attack if target > level else release)
        envelope[i] = level
    centres = np.arange(len(envelope)) * HOP
    return np.interp(np.arange(len(speech)), centres, envelope).astype(np.float32)


def duck(bed: np.ndarray, envelope: np.ndarray, duck_db: float) -> np.ndarray:
    if duck_db <= 0:
        return bed
    return bed * (10 ** (-duck_db * envelope / 20)).astype(np.float32)


def build_soundtrack(
    scenes: list[ComposeScene], timeline: Timeline, inputs: dict[str, Path], music: Music | None
) -> Soundtrack:
    """The whole video's sound, exactly as long as its frames."""
    total = round(timeline.frames / timeline.fps * SAMPLE_RATE)
    speech = np.zeros(total, np.float32)
    placed: dict[int, np.ndarray] = {}
    for span in timeline.spans:
        sound = scene_sound(scenes[span.index], span.index, inputs, span.duration_s)
        if sound is None or len(sound) == 0:
            continue
        sound = _edges(sound, span.overlap_in_s, span.overlap_out_s)
        first = round(span.start_s * SAMPLE_RATE)
        sound = sound[: max(0, total - first)]
        speech[first : first + len(sound)] += sound
        placed[span.index] = sound
    envelope = speech_envelope(speech)
    mix = speech.copy()
    # The composition's music, silenced (with short ramps) where a scene plays its own.
    own = [span for span in timeline.spans if scenes[span.index].scene.music is not None]
    if music is not None and "music" in inputs:
        bed = music_bed(inputs["music"], total, music.volume_db, MUSIC_FADE_IN_S, MUSIC_FADE_OUT_S)
        if own:
            keep = np.ones(total, np.float32)
            for span in own:
                a, b = int(span.start_s * SAMPLE_RATE), int(span.end_s * SAMPLE_RATE)
                keep[a:b] = 0.0
            keep = _smooth(keep, int(SCENE_MUSIC_FADE_S * SAMPLE_RATE))
            bed *= keep
        mix += duck(bed, envelope, music.duck_db)
    for span in own:
        scene_music = scenes[span.index].scene.music
        role = scene_role(span.index, "music")
        if scene_music is None or role not in inputs:
            continue
        a = round(span.start_s * SAMPLE_RATE)
        n = min(total - a, round(span.duration_s * SAMPLE_RATE))
        bed = music_bed(inputs[role], n, scene_music.volume_db, SCENE_MUSIC_FADE_S, SCENE_MUSIC_FADE_S)
        mix[a : a + n] += duck(bed, envelope[a : a + n], scene_music.duck_db)
    peak = float(np.max(np.abs(mix))) if total else 0.0
    if peak > 0.98:  # never clip: scale the whole mix (speech and music keep their balance)
        mix *= np.float32(0.98 / peak)
    return Soundtrack(mix=mix, speech=speech, scene_sounds=placed)


def _smooth(curve: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return curve
    kernel = np.ones(width, np.float32) / width
    return np.convolve(curve, kernel, mode="same").astype(np.float32)


def write_soundtrack(track: Soundtrack, path: Path, *, watermark: bool) -> Path:
    if watermark:
        from talkstack.safety.watermark import write_marked_wav

        return write_marked_wav(path, track.mix, track.rate)
    return write_wav(path, track.mix, track.rate)
