"""lite-matte on the bundled portrait rendered by the lite avatar: the mask covers the face, leaves
the background out, matches the video frame for frame, and does not flicker."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.engines.lite.face import detect_faces
from talkstack.engines.lite.matte import matte_video, model_path, render_matte
from talkstack.media.alpha import encode_alpha_webm, encode_prores4444, read_alpha_frames, read_mask_frames
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.video import iter_frames, probe_video
from tests.conftest import PORTRAIT, SPEECH
from tests.support.matte import matte_task

GREEN = np.array([0, 255, 0], np.float32)
MODEL_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
"""The selfie segmentation model of the mediapipe 0.10.14 wheel (NOTICE names it with this digest)."""


def test_shipped_segmentation_model_is_the_published_file() -> None:
    assert model_path().stat().st_size == 249_505
    assert hashlib.sha256(model_path().read_bytes()).hexdigest() == MODEL_SHA256


@pytest.fixture(scope="module")
def avatar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.2 s of the lite avatar at 320×320 (the head moves and the mouth talks)."""
    tmp = tmp_path_factory.mktemp("matte")
    clip = read_audio(SPEECH)
    speech = write_wav(tmp / "speech.wav", clip.samples[: int(1.2 * clip.sample_rate)], clip.sample_rate)
    video = tmp / "avatar.mp4"
    render_avatar(PORTRAIT, speech, video, options=LiteAvatarOptions(max_side=320))
    return video


@pytest.fixture(scope="module")
def frames(avatar: Path) -> list[np.ndarray]:
    return list(iter_frames(avatar))


@pytest.fixture(scope="module")
def face_box(frames: list[np.ndarray]) -> tuple[slice, slice]:
    """The central half of the face oval's box on the first frame, from the face landmarks."""
    face = max(detect_faces(frames[0]), key=lambda f: f.area)
    x0, y0, x1, y1 = face.box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
    return slice(int(cy - hh), int(cy + hh)), slice(int(cx - hw), int(cx + hw))


@pytest.fixture(scope="module", params=["photo", "frames"])
def matted(request, avatar: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list]:
    """Both methods: the photo's mask moved with the head (the task carries the photo), and
    per-frame segmentation (any video)."""
    out = tmp_path_factory.mktemp("mask") / "mask.mp4"
    result = matte_video(avatar, out, photo=PORTRAIT if request.param == "photo" else None)
    assert result.method == request.param
    return request.param, out, list(read_mask_frames(out))


def test_mask_matches_the_video_frame_for_frame(matted, avatar: Path) -> None:
    _, path, masks = matted
    video, mask = probe_video(avatar), probe_video(path)
    assert (mask.width, mask.height, mask.fps) == (video.width, video.height, video.fps)
    assert len(masks) == mask.frames == video.frames
    assert masks[0].shape == (video.height, video.width)


def test_face_is_person_and_corners_are_background(matted, face_box) -> None:
    _, _, masks = matted
    for i, mask in enumerate(masks):
        assert (mask[face_box] > 0.5).mean() >= 0.95, f"frame {i}"
        for corner in (mask[:24, :24], mask[:24, -24:]):  # the top corners: wall and flag
            assert corner.max() < 0.1, f"frame {i}"


def test_over_green_the_background_is_gone(matted, frames, face_box) -> None:
    """Composited over solid green: ≥95 % of the pixels outside the mask are green and ≥95 % of the
    face box is the person's own pixels, per frame."""
    _, _, masks = matted
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        alpha = mask[..., None]
        composite = (alpha * frame + (1 - alpha) * GREEN).round()
        outside = mask < 0.5
        green = np.abs(composite[outside] - GREEN).max(axis=1) <= 12
        assert green.mean() >= 0.95, f"frame {i}: {green.mean():.3f}"
        unchanged = np.abs(composite[face_box] - frame[face_box]).max(axis=-1) <= 12
        assert unchanged.mean() >= 0.95, f"frame {i}"
        assert outside.mean() > 0.2  # there is background to replace: the test is not vacuous


def test_mask_is_stable_over_time(matted) -> None:
    """Nothing but the head moves, by a few pixels: the mask changes little from frame to frame
    (per-frame segmentation without the temporal smoothing changes up to 0.0024 here)."""
    method, _, masks = matted
    changes = [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(masks)]
    assert max(changes) < 0.0018, (method, max(changes))


def test_mask_has_soft_edges(matted) -> None:
    """A band of in-between values along the outline (feathered, not a binary cut-out), thin
    compared with the picture."""
    _, _, masks = matted
    soft = ((masks[0] > 0.05) & (masks[0] < 0.95)).mean()
    assert 0.002 < soft < 0.05


def test_matte_step_on_a_still_image(tmp_path: Path) -> None:
    """An image scene: the step writes a one-frame mask the image's size."""
    outputs, result = render_matte(matte_task(), {"video": PORTRAIT}, tmp_path)
    masks = list(read_mask_frames(outputs["mask"]))
    assert len(masks) == result.frames == 1
    assert masks[0].shape == (512, 512)
    assert masks[0][200:260, 200:260].mean() > 0.95  # the face
    assert masks[0][:40, 300:].max() < 0.1  # the wall


def test_a_photo_that_is_not_the_videos_falls_back_to_per_frame_masks(avatar: Path, tmp_path: Path) -> None:
    """The photo's mask fits only a video whose background is that photo's (a lite avatar render):
    given another photo of the same shape, every frame is matted on its own."""
    from PIL import Image

    other = tmp_path / "mirrored.png"
    Image.open(PORTRAIT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    result = matte_video(avatar, tmp_path / "mask.mp4", photo=other)
    assert result.method == "frames" and result.frames == probe_video(avatar).frames


@pytest.mark.parametrize("encode", [encode_alpha_webm, encode_prores4444], ids=["webm", "mov"])
def test_the_avatar_cut_out_decodes_with_alpha(
    encode, avatar: Path, frames, face_box, tmp_path: Path
) -> None:
    """The lite avatar with its mask as alpha, encoded as editors get it (the compose step's
    transparent outputs): decoded, opaque over the face and transparent in the top corners."""
    matte_video(avatar, tmp_path / "mask.mp4", photo=PORTRAIT)
    masks = read_mask_frames(tmp_path / "mask.mp4")
    rgba = (np.dstack([f, (m * 255).round().astype(np.uint8)]) for f, m in zip(frames, masks, strict=True))
    path = encode(rgba, 25, tmp_path / ("cut" + (".webm" if encode is encode_alpha_webm else ".mov")))
    decoded = list(read_alpha_frames(path))
    assert len(decoded) == len(frames)
    for i, frame in enumerate(decoded):
        alpha = frame[..., 3]
        assert (alpha[face_box] >= 250).mean() >= 0.95, f"frame {i}"
        assert alpha[:24, :24].max() <= 5 and alpha[:24, -24:].max() <= 5, f"frame {i}"


def test_the_photos_mask_follows_the_head(tmp_path: Path) -> None:
    """Frames drawn by the lite rig with the head pushed sideways: the mask's head moves with it by
    about as much, and the body's mask stays the photo's."""
    import cv2

    from talkstack.engines.lite.rig import AvatarRig
    from talkstack.media.image import read_image
    from talkstack.media.video import Mp4Writer

    photo = cv2.resize(read_image(PORTRAIT)[0], (320, 320), interpolation=cv2.INTER_AREA)
    face = max(detect_faces(photo), key=lambda f: f.area)
    rig = AvatarRig(photo, face)
    video = tmp_path / "pushed.mp4"
    with Mp4Writer(video, 320, 320, 25) as out:
        for dx in (0.0, 0.1, 0.1, 0.0):
            out.write(rig.render(0.0, 0.0, 0.0, dx, 0.0))
    assert matte_video(video, tmp_path / "mask.mp4", photo=PORTRAIT).method == "photo"
    masks = list(read_mask_frames(tmp_path / "mask.mp4"))

    y0 = int(face.box[1])
    head = masks[0][max(0, y0 - 20) : y0 + 10]  # the top of the head: hair against the wall
    columns = np.arange(320, dtype=np.float32)

    def centre(mask: np.ndarray) -> float:
        rows = mask[max(0, y0 - 20) : y0 + 10]
        return float((rows * columns).sum() / rows.sum())

    moved = centre(masks[1]) - centre(masks[0])
    assert head.sum() > 0
    assert 0.5 * 0.1 * face.width < moved < 1.5 * 0.1 * face.width  # the rig moved it 0.1 face widths
    assert abs(centre(masks[3]) - centre(masks[0])) < 0.5  # and back
    body = slice(280, 320)
    assert np.abs(masks[1][body] - masks[0][body]).max() < 0.03  # the body does not move
