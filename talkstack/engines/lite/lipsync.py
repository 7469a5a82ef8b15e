"""A lip-sync regression measure: does the mouth seen in a video follow its own audio?

Measures the inner-lip gap (landmarks 13–14, in face widths) on every decoded frame and the
decoded audio's loudness per frame, and reports their best Pearson correlation within ±max_lag
frames. It uses the same landmark family as the renderer, so it guards against regressions; it
is not an independent judge of lip-sync quality (SyncNet-style scores need a learnt model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from talkstack.engines.lite.face import face_tracker
from talkstack.media.audio import frame_levels_dbfs
from talkstack.media.video import iter_frames


@dataclass(frozen=True)
class LipSyncScore:
    r: float  # best correlation within the lag window
    lag_frames: int  # >0: the mouth trails the audio
    frames: int
    detected: int  # frames where a face was found


def mouth_gaps(video: Path) -> np.ndarray:
    gaps = []
    with face_tracker() as track:
        for frame in iter_frames(video):
            face = track(frame)
            gaps.append(
                np.nan
                if face is None
                else float(np.linalg.norm(face.points[13] - face.points[14])) / face.width
            )
    return np.array(gaps)


def audio_levels(video: Path, fps: float) -> np.ndarray:
    with av.open(str(video)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [
            f.to_ndarray().reshape(-1) for fr in container.decode(stream) for f in resampler.resample(fr)
        ]
    return frame_levels_dbfs(np.concatenate(chunks), rate, window_s=1 / fps)


def lipsync_score(video: Path, fps: float = 25, max_lag: int = 1) -> LipSyncScore:
    gaps = mouth_gaps(video)
    levels = audio_levels(video, fps)
    n = min(len(gaps), len(levels))
    gaps, levels = gaps[:n], levels[:n]
    best_r, best_lag = -1.0, 0
    for lag in range(-max_lag, max_lag + 1):
        g = gaps[lag:] if lag >= 0 else gaps[:lag]
        a = levels[: n - lag] if lag >= 0 else levels[-lag:]
        ok = ~np.isnan(g)
        if ok.sum() < 10 or np.std(g[ok]) == 0:
            continue
        r = float(np.corrcoef(g[ok], a[ok])[0, 1])
        if r > best_r:
            best_r, best_lag = r, lag
    return LipSyncScore(best_r, best_lag, n, int(np.count_nonzero(~np.isnan(gaps))))
