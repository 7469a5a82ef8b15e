"""The warp rig: turns (mouth, blink, head pose) into a frame, touching only the head region.

Built once per photo from its landmarks. Every field that does not depend on the frame is
precomputed (jaw and eyelid displacement per unit opening, the head weight), so a frame costs two
`cv2.remap` calls and a few float32 array operations on the head region only. Pixels outside
`head_box` are never written: they stay exactly the photo's.

Face frame: origin at the mouth centre, u along the eye line, v perpendicular to it (downwards).
Displacements are backward maps (an output pixel samples the photo at `p - d`), and each
vertical profile rises with a slope below 1 so the mapping stays monotonic (no folds).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkstack.engines.lite.face import (
    CHIN,
    LEFT_EYE,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    OUTER_LIPS,
    RIGHT_EYE,
    UPPER_INNER_LIP,
    Face,
)

JAW_DROP = 0.30  # jaw travel at full opening, in mouth widths
HEAD_FEATHER = 1.35  # head weight falls from 1 to 0 between ellipse radius 1 and this


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


class AvatarRig:
    def __init__(self, photo: np.ndarray, face: Face, *, expressiveness: float = 1.0) -> None:
        self.photo = photo
        h, w = photo.shape[:2]
        pts = face.points.astype(np.float32)
        x0, y0, x1, y1 = face.box
        fw, fh = x1 - x0, y1 - y0
        self.face_width = float(fw)

        # Head ellipse (a little above the oval centre, to include hair), and the region we touch.
        self.centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2 - 0.08 * fh], np.float32)
        self.axes = np.array([0.5 * fw * 1.3, 0.5 * fh * 1.45], np.float32)
        chin = pts[CHIN]
        mouth_w = float(np.linalg.norm(pts[MOUTH_LEFT] - pts[MOUTH_RIGHT]))
        self.max_drop = JAW_DROP * mouth_w * expressiveness
        reach = self.axes * HEAD_FEATHER
        chin_v = float(chin[1] - (pts[13][1] + pts[14][1]) / 2)
        neck = max(0.8 * chin_v, 2.5 * self.max_drop)
        self.box = Box(
            max(0, int(self.centre[0] - reach[0]) - 2),
            max(0, int(self.centre[1] - reach[1]) - 2),
            min(w, int(np.ceil(self.centre[0] + reach[0])) + 2),
            min(h, int(np.ceil(max(self.centre[1] + reach[1], chin[1] + neck))) + 2),
        )
        ys, xs = np.mgrid[self.box.y0 : self.box.y1, self.box.x0 : self.box.x1].astype(np.float32)
        self._grid = (xs, ys)
        self._roi = photo[self.box.slices].copy()

        # Face frame
        roll = face.roll
        self.e_u = np.array([np.cos(roll), np.sin(roll)], np.float32)
        self.e_v = np.array([-np.sin(roll), np.cos(roll)], np.float32)
        mouth = (pts[13] + pts[14]) / 2
        u, v = self._to_face(xs, ys, mouth)

        self._jaw, self._lip_v, self._lens = self._jaw_field(pts, mouth, u, v, mouth_w, fw / 2, chin_v, neck)
        self._v = v
        self._eyes = self._eye_field(pts, xs, ys)
        self._head = self._head_weight(xs, ys)
        self._cavity_rgb, self._teeth_rgb = self._mouth_colours(pts)
        self._pivot = np.array([chin[0], chin[1] + 0.25 * fh], np.float32)
        # Pixels no field can move: restored from the photo so they stay bit-exact.
        self._still = (self._head <= 0) & (self._jaw == 0) & (self._eyes == 0)

    # -- static fields ----------------------------------------------------------------------------
    def _to_face(self, xs: np.ndarray, ys: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = xs - origin[0], ys - origin[1]
        return dx * self.e_u[0] + dy * self.e_u[1], dx * self.e_v[0] + dy * self.e_v[1]

    def _contour(self, pts: np.ndarray, idx: list[int], mouth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cu, cv = self._to_face(pts[idx, 0], pts[idx, 1], mouth)
        order = np.argsort(cu)
        return cu[order], cv[order]

    def _jaw_field(self, pts, mouth, u, v, mouth_w, half_face, chin_v, neck):
        """Per-unit jaw displacement along v: full under the lips, stretching toward the corners.

        Returns the field, the cut (upper inner-lip line, v per pixel) and the lens: how far the
        lips part at each u (1 mid-mouth, 0 at the corners), which also shapes the painted cavity.
        """
        cu, cv = self._contour(pts, UPPER_INNER_LIP, mouth)
        lip_v = np.interp(u, cu, cv).astype(np.float32)  # the cut: upper inner-lip line
        half_inner = max(1.0, (cu[-1] - cu[0]) / 2)
        lens = np.sqrt(np.clip(1 - ((u - (cu[0] + cu[-1]) / 2) / half_inner) ** 2, 0, 1))
        # Beyond the lips the jaw still drops, but the skin stretches over `ramp` instead of parting.
        ramp = max(0.5 * mouth_w, 2.0 * self.max_drop)
        below = v - lip_v
        parting = lens + (1 - lens) * _smoothstep(below / ramp)
        lateral = 1 - _smoothstep((np.abs(u) - 0.55 * half_face) / (0.6 * half_face))
        tail = 1 - _smoothstep((v - chin_v) / neck)
        field = np.where(below >= 0, parting * lateral * tail, 0.0).astype(np.float32)
        return field, lip_v, lens.astype(np.float32)

    def _eye_field(self, pts, xs, ys) -> np.ndarray:
        """Per-unit blink: the lids meet three quarters of the way down; the skin beyond stretches.

        Above the meeting line content moves down (upper lid), below it moves up (lower lid), so
        at a full blink the two lash lines touch and the brows stay where they are.
        """
        total = np.zeros_like(xs)
        for eye in (RIGHT_EYE, LEFT_EYE):
            corners = pts[[eye["outer"], eye["inner"]]]
            centre = corners.mean(axis=0)
            width = float(np.linalg.norm(corners[0] - corners[1]))
            u, v = self._to_face(xs, ys, centre)
            upper = float(self._to_face(*pts[eye["upper"]].mean(axis=0), centre)[1])
            lower = float(self._to_face(*pts[eye["lower"]].mean(axis=0), centre)[1])
            opening = max(1.0, lower - upper) * 1.1
            meet = upper + 0.75 * (lower - upper)
            down, up = 0.75 * opening, 0.25 * opening
            lid_down = down * _smoothstep((v - (upper - 1.5 * down)) / (1.5 * down))
            lid_up = up * (1 - _smoothstep((v - lower) / (1.5 * up + 1.0)))
            across = 1 - _smoothstep((np.abs(u) - 0.45 * width) / (0.35 * width))
            total += np.where(v < meet, lid_down, -lid_up) * across
        return total.astype(np.float32)

    def _head_weight(self, xs, ys) -> np.ndarray:
        r = np.hypot((xs - self.centre[0]) / self.axes[0], (ys - self.centre[1]) / self.axes[1])
        return (1 - _smoothstep((r - 1) / (HEAD_FEATHER - 1))).astype(np.float32)

    def _mouth_colours(self, pts) -> tuple[np.ndarray, np.ndarray]:
        """Cavity colour from the photo's own lips (darkened), so it matches any skin tone."""
        mask = np.zeros(self.photo.shape[:2], np.uint8)
        cv2.fillPoly(mask, [pts[OUTER_LIPS].astype(np.int32)], 1)
        lips = self.photo[mask.astype(bool)].astype(np.float32)
        lip = lips.mean(axis=0) if len(lips) else np.array([150, 80, 80], np.float32)
        cavity = lip * np.array([0.32, 0.22, 0.24], np.float32)
        teeth = np.array([214, 206, 196], np.float32) * (0.55 + 0.3 * lip.mean() / 255)
        return cavity, teeth

    # -- per frame --------------------------------------------------------------------------------
    def render(self, mouth: float, blink: float, roll_deg: float, dx: float, dy: float) -> np.ndarray:
        """A full frame (a fresh array): the photo with the head region re-rendered."""
        frame = self.photo.copy()
        frame[self.box.slices] = self.render_head(mouth, blink, roll_deg, dx, dy)
        return frame

    def render_head(self, mouth: float, blink: float, roll_deg: float, dx: float, dy: float) -> np.ndarray:
        xs, ys = self._grid
        drop = np.float32(self.max_drop * mouth)
        shift = drop * self._jaw + np.float32(blink) * self._eyes
        face = cv2.remap(
            self._roi,
            xs - self.box.x0 - shift * self.e_v[0],
            ys - self.box.y0 - shift * self.e_v[1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if drop > 0.3:
            face = self._paint_cavity(face, drop)
        # Head motion: a small rigid turn about the neck plus a shift, faded out by the head weight.
        theta = np.deg2rad(roll_deg)
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        px, py = xs - self._pivot[0] - dx * self.face_width, ys - self._pivot[1] - dy * self.face_width
        sx, sy = c * px + s * py + self._pivot[0], -s * px + c * py + self._pivot[1]
        wgt = self._head
        out = cv2.remap(
            face,
            xs + wgt * (sx - xs) - self.box.x0,
            ys + wgt * (sy - ys) - self.box.y0,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        # Where the head weight is zero the pixel is the photo's, exactly.
        out[self._still] = self._roi[self._still]
        return out

    def _paint_cavity(self, face: np.ndarray, drop: np.float32) -> np.ndarray:
        # Gap pixels: below the upper inner lip, but sampling from above it after the jaw moved.
        depth = self._v - self._lip_v  # how far below the cut
        src_depth = depth - drop * self._jaw
        alpha = np.clip(-src_depth, 0, 1) * np.clip(depth + 0.5, 0, 1)
        if not alpha.any():
            return face
        gap = np.maximum(drop * self._lens, 1e-3)
        t = np.clip(depth / gap, 0, 1)[..., None]
        # Upper teeth just under the lip, darker toward the corners; shaded throat below.
        teeth_w = np.clip((0.28 - t) / 0.08, 0, 1) * np.clip(self._lens * 1.6 - 0.2, 0, 1)[..., None]
        colour = self._cavity_rgb * (0.75 + 0.5 * np.abs(t - 0.55))
        colour = colour * (1 - teeth_w) + self._teeth_rgb * teeth_w
        a = alpha[..., None]
        return (face * (1 - a) + colour * a).astype(np.uint8)
