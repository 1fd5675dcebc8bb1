"""Drawing pedestrian frames with OpenCV: a 2.5-D stick-and-box body, a walking gait, a camera.

The body is a set of 3-D joints in a person-centred frame (``y`` up, ``z`` towards where the
person faces, lengths in units of the person's height). A gait phase moves legs and arms, a yaw
rotation turns the person, an orthographic projection puts the joints on the image, and the
body parts (torso box, limbs, head, hair, bags, badge) are painted far-to-near. The camera then
adds its background, resolution loss, blur, illumination and noise.

The 17 returned joints follow the COCO order (:data:`COCO_JOINTS`); ``v = 1`` means visible and
``v = 0`` means hidden (occluder, outside the frame, or facing away for the face joints).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import List, Optional, Sequence, Tuple

import cv2

cv2.setNumThreads(1)
import numpy as np

from fastreid_ext.utils.keypoints import COCO_JOINTS

from .identity import KIND_TRACKLET, Camera, Identity, make_camera, rng_for

_SHIFT = 3  # sub-pixel bits for cv2 drawing
_SCALE = float(1 << _SHIFT)
_ANKLE_H = 0.035
_TORSO_D = 0.05  # half depth of the torso box


@dataclasses.dataclass(frozen=True)
class TrackletSpec:
    """What to render for one tracklet and where to write its frames.

    ``kind``: ``person`` (normal), ``background`` (no person: a false detection), ``junk``
    (a badly framed person: zoomed-in body part or a tiny far-away figure).
    ``key``: the integer tuple seeding this tracklet's generator.
    ``frame_step``: gait-time advance between consecutive written frames.
    """

    identity: Identity
    camera: int
    n_frames: int
    key: Tuple[int, ...]
    paths: Tuple[str, ...]
    kind: str = "person"
    frame_step: float = 1.0
    occlusion: float = 0.15
    # knobs that isolate a mechanism (all 0 by default: the frames are then unchanged); each
    # draws from its own stream (:func:`knob_rng`) so the other frames' bytes do not move
    corrupt: float = 0.0  # fraction of frames replaced by a corrupted frame (random-value block)
    part_occlusion: float = 0.0  # fraction of frames with a partial occluder on one side
    misalign: float = 0.0  # per-frame position / scale jitter (std, fraction of the frame)
    scale_var: float = 0.0  # per-tracklet person scale factor exp(U(-s, s)) and placement
    pose_var: float = 0.0  # per-tracklet yaw offset U(-pi, pi) * pose_var
    occluder_clothes: float = 0.0  # fraction of the partial occluders drawn as a passer-by's clothes


#: the seed-tuple tail of the knobs' own random stream
_KNOB_STREAM = 7_000_003


def knob_rng(spec: TrackletSpec) -> np.random.Generator:
    return rng_for(*spec.key, _KNOB_STREAM)


def clothes_rng(spec: TrackletSpec) -> np.random.Generator:
    """The ``occluder_clothes`` knob's own stream (the other knobs' draws do not move)."""
    return rng_for(*spec.key, _KNOB_STREAM + 1)


def knob_frames(r: np.random.Generator, frac: float, n: int) -> np.ndarray:
    """Indices (sorted) of ``round(frac * n)`` frames out of ``n``; at least one when
    ``frac > 0`` and at most ``n - 1`` when ``frac < 1``."""
    k = int(round(frac * n))
    if frac > 0:
        k = max(k, 1)
    if frac < 1:
        k = min(k, n - 1)
    return np.sort(r.choice(n, max(k, 0), replace=False)) if k > 0 else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- camera assets
def _background(cam: Camera, seed: int, h: int, w: int) -> np.ndarray:
    """A wide (h, 3w, 3) uint8 backdrop for camera ``cam``: wall/sky, blocks, ground, texture."""
    r = rng_for(seed, KIND_TRACKLET, -7, cam.index, h, w)
    ww = 3 * w
    hz = int(round(cam.horizon * h))
    img = np.empty((h, ww, 3), np.float32)
    ramp = np.linspace(0.85, 1.1, max(hz, 1), dtype=np.float32)[:, None, None]
    img[:hz] = np.asarray(cam.sky, np.float32)[None, None] * ramp
    img[hz:] = np.asarray(cam.ground, np.float32)[None, None]
    for _ in range(cam.n_blocks):
        x0 = int(r.integers(0, ww))
        bw = int(r.integers(max(2, w // 8), max(3, w // 2)))
        y0 = int(r.integers(0, max(1, hz - 4)))
        y1 = int(r.integers(y0 + 2, max(y0 + 3, hz + h // 6)))
        col = np.clip(np.asarray(cam.sky, np.float32) + r.normal(0, 45, 3), 0, 255)
        img[y0:y1, x0:x0 + bw] = col
    # ground tiles
    step = max(4, h // 10)
    tile = np.clip(np.asarray(cam.ground, np.float32) * 0.8, 0, 255)
    for y in range(hz + step // 2, h, step):
        img[y:y + 1] = tile
    for x in range(int(r.integers(0, step)), ww, 2 * step):
        img[hz:, x:x + 1] = tile
    low = cv2.resize(r.normal(1.0, 0.08, size=(6, 18)).astype(np.float32), (ww, h), interpolation=cv2.INTER_CUBIC)
    img *= low[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def camera_assets(seed: int, cam_index: int, h: int, w: int):
    """(camera, background (h, 3w, 3) uint8 with the camera's left-right light gradient baked in,
    noise tiles (2h, 2w, 3) uint8: the positive and the negative part of Gaussian noise)."""
    cam = make_camera(cam_index, seed)
    bg = _background(cam, seed, h, w).astype(np.float32)
    xs = np.linspace(-1.0, 1.0, 3 * w, dtype=np.float32)[None, :, None]
    bg = np.clip(bg * (1.0 + cam.gradient * 0.5 * np.sin(xs * 2.5)), 0, 255).astype(np.uint8)
    r = rng_for(seed, KIND_TRACKLET, -8, cam_index, h, w)
    noise = np.round(r.standard_normal((2 * h, 2 * w, 3)) * cam.noise)
    pos = np.clip(noise, 0, 255).astype(np.uint8)
    neg = np.clip(-noise, 0, 255).astype(np.uint8)
    return cam, bg, pos, neg


# ----------------------------------------------------------------------------- skeleton
def body_points(ident: Identity, phase: float) -> dict:
    """Named 3-D points (x, y, z) of ``ident`` at gait ``phase`` (radians), person height = 1."""
    c = math.cos(phase)
    bob = ident.bob * (abs(c) - 0.5)
    hip_y = _ANKLE_H + ident.leg + bob
    r_h = ident.head
    head_y = 1.0 - r_h + bob
    sh_y = head_y - r_h - 0.045
    pts = {}
    pts["head"] = (0.0, head_y, 0.01)
    pts["nose"] = (0.0, head_y - 0.2 * r_h, r_h)
    pts["left_eye"] = (0.35 * r_h, head_y + 0.15 * r_h, 0.85 * r_h)
    pts["right_eye"] = (-0.35 * r_h, head_y + 0.15 * r_h, 0.85 * r_h)
    pts["left_ear"] = (r_h, head_y, 0.0)
    pts["right_ear"] = (-r_h, head_y, 0.0)
    pts["neck"] = (0.0, sh_y + 0.02, 0.0)
    thigh, shin = ident.leg * 0.52, ident.leg * 0.48
    for side, sign, ph in (("left", 1.0, 0.0), ("right", -1.0, math.pi)):
        ss = math.sin(phase + ph)
        cc = math.cos(phase + ph)
        a = ident.swing * ss
        k = ident.swing * 1.3 * max(0.0, cc)
        hip = (sign * ident.hip, hip_y, 0.0)
        knee = (hip[0], hip_y - thigh * math.cos(a), thigh * math.sin(a))
        ankle = (hip[0], knee[1] - shin * math.cos(a - k), knee[2] + shin * math.sin(a - k))
        pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ankle
        pts[f"{side}_toe"] = (hip[0], max(ankle[1] - 0.02, 0.0), ankle[2] + 0.06)
        sa = -ident.arm_swing * ss
        e = 0.25 + 0.35 * max(0.0, -ss) * ident.arm_swing
        sh = (sign * ident.shoulder, sh_y, 0.0)
        el = (sh[0] + sign * 0.015, sh_y - 0.17 * math.cos(sa), 0.17 * math.sin(sa))
        wr = (el[0] + sign * 0.01, el[1] - 0.15 * math.cos(sa + e), el[2] + 0.15 * math.sin(sa + e))
        pts[f"{side}_shoulder"], pts[f"{side}_elbow"], pts[f"{side}_wrist"] = sh, el, wr
    return pts


def _box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
    return np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], np.float64)


class _Projector:
    """Orthographic projection after a yaw rotation; pixel = (cx + X' * hp, foot - Y * hp)."""

    def __init__(self, yaw: float, hp: float, cx: float, foot: float):
        self.c, self.s, self.hp, self.cx, self.foot = math.cos(yaw), math.sin(yaw), hp, cx, foot

    def uv(self, pts: np.ndarray) -> np.ndarray:
        x = pts[..., 0] * self.c + pts[..., 2] * self.s
        return np.stack([self.cx + x * self.hp, self.foot - pts[..., 1] * self.hp], -1)

    def depth(self, pts: np.ndarray) -> float:
        pts = np.asarray(pts, np.float64).reshape(-1, 3)
        return float(np.mean(-pts[:, 0] * self.s + pts[:, 2] * self.c))


def _fix(uv: np.ndarray) -> np.ndarray:
    return np.round(uv * _SCALE).astype(np.int32)


# ----------------------------------------------------------------------------- drawing
def _draw_person(img: np.ndarray, ident: Identity, pts: dict, proj: _Projector) -> None:
    """Paint ``ident`` in pose ``pts`` onto ``img`` (in place), far parts first.

    All part geometry is gathered first and projected in one call (speed): each part is
    ``(points (k, 3), op, color, width, depth_bias)`` with ``op`` in ``poly | line | circle``.
    """
    u = ident.uniform
    hp = proj.hp
    flat: List[Sequence[float]] = []  # all part points, concatenated
    starts: List[int] = []
    sizes: List[int] = []
    ops: List[Tuple[str, tuple, float, float]] = []

    def add(points, op: str, color, width: float = 0.0, bias: float = 0.0) -> None:
        if isinstance(points, np.ndarray):
            points = points.tolist()
        elif len(points) == 3 and not isinstance(points[0], (list, tuple)):
            points = [points]
        starts.append(len(flat))
        sizes.append(len(points))
        flat.extend(points)
        ops.append((op, color, width, bias))

    lh, ls = pts["left_hip"], pts["left_shoulder"]
    hip_y, sh_y = lh[1], ls[1]
    d = _TORSO_D

    def torso_band(t0: float, t1: float, z0: float = -d, z1: float = d, shrink: float = 1.0) -> list:
        ya, yb = hip_y + t0 * (sh_y - hip_y), hip_y + t1 * (sh_y - hip_y)
        wa = (ident.hip + t0 * (ident.shoulder - ident.hip)) * shrink
        wb = (ident.hip + t1 * (ident.shoulder - ident.hip)) * shrink
        return [[sx * w, y, z] for (w, y) in ((wa, ya), (wb, yb)) for sx in (-1, 1) for z in (z0, z1)]

    # torso, pelvis, pattern (pelvis / stripe depth pinned to the torso centre so they stay on top)
    add(torso_band(0.0, 1.0), "poly", u.top)
    add(torso_band(-0.18, 0.06, shrink=1.05), "poly_c", u.bottom, 0.0, 0.001)
    if u.pattern == "stripe":
        add(torso_band(0.45, 0.6, -d * 1.02, d * 1.02, 1.02), "poly_c", u.pattern_color, 0.0, 0.002)
    elif u.pattern == "collar":
        add(torso_band(0.82, 1.0, d * 0.4, d * 1.05, 0.6), "poly", u.pattern_color, 0.0, 0.002)
    limb = ident.limb
    for side in ("left", "right"):
        hip, knee, ankle, toe = pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"], pts[f"{side}_toe"]
        add((hip, knee), "line", u.bottom, limb * 1.25)
        add((knee, ankle), "line", ident.skin if u.shorts else u.bottom, limb * 1.05, 0.0005)
        add((ankle, toe), "line", ident.shoe, limb * 0.95, 0.001)
        sh, el, wr = pts[f"{side}_shoulder"], pts[f"{side}_elbow"], pts[f"{side}_wrist"]
        add((sh, el), "line", u.top, limb * 0.95, 0.01)
        add((el, wr), "line", u.top if u.long_sleeves else ident.skin, limb * 0.8, 0.0105)
        add(wr, "circle", ident.skin, limb * 0.5, 0.011)
    head = pts["head"]
    r_h = ident.head
    bald = ident.hair_style == "bald"
    head_i = len(ops)
    add(head, "circle", ident.skin if bald else ident.hair, r_h)
    if not bald:
        add(pts["nose"], "face", ident.skin, r_h * 0.74)
    y = head[1]
    if ident.hair_style == "long":
        add(_box(-0.8 * r_h, 0.8 * r_h, y - 2.3 * r_h, y, -0.9 * r_h, -0.5 * r_h), "poly", ident.hair)
    elif ident.hair_style == "cap":
        cap = [[-1.05 * r_h, y + 0.15 * r_h, 0], [1.05 * r_h, y + 0.15 * r_h, 0], [0, y + 1.08 * r_h, 0],
               [-0.75 * r_h, y + 0.85 * r_h, 0], [0.75 * r_h, y + 0.85 * r_h, 0],
               [0, y + 0.2 * r_h, 1.6 * r_h], [-0.5 * r_h, y + 0.2 * r_h, 1.3 * r_h], [0.5 * r_h, y + 0.2 * r_h, 1.3 * r_h]]
        add(cap, "poly_h", ident.cap_color, 0.0, 0.0002)
    if ident.bag == "backpack":
        add(_box(-0.8 * ident.shoulder, 0.8 * ident.shoulder, hip_y + 0.06, sh_y - 0.02, -d - 0.075, -d), "poly", ident.bag_color)
        for sx in (-1, 1):
            add(((sx * 0.6 * ident.shoulder, sh_y, d * 1.05), (sx * 0.65 * ident.shoulder, hip_y + 0.1, d * 1.05)),
                "line", ident.bag_color, 0.012, 0.003)
    elif ident.bag == "shoulder":
        x0 = ident.hip + 0.005
        add(_box(x0, x0 + 0.045, hip_y - 0.03, hip_y + 0.09, -0.05, 0.05), "poly", ident.bag_color, 0.0, 0.02)
        for zs in (1.05, -1.05):
            add(((-ident.shoulder * 0.7, sh_y, d * zs), (x0, hip_y + 0.09, d * zs)), "line", ident.bag_color, 0.012, 0.003 * zs)
    elif ident.bag == "handbag":
        wx, wy, wz = pts["right_wrist"]
        add(_box(wx - 0.035, wx + 0.005, wy - 0.1, wy - 0.005, wz - 0.045, wz + 0.045), "poly", ident.bag_color, 0.0, 0.012)
    if ident.badge:
        add(_box(0.025, 0.07, sh_y - 0.1, sh_y - 0.05, d, d + 0.004), "poly", ident.badge_color, 0.0, 0.003)

    allp = np.asarray(flat, np.float64)
    uv = proj.uv(allp)
    z = -allp[:, 0] * proj.s + allp[:, 2] * proj.c
    depth = (np.add.reduceat(z, starts) / np.asarray(sizes)).tolist()
    head_d, head_uv = depth[head_i], uv[starts[head_i]]
    fixed = np.round(uv * _SCALE).astype(np.int32)
    pts_i = fixed.tolist()
    keyed = []
    for i, (op, color, width, bias) in enumerate(ops):
        if op == "poly_c":
            dd = bias
        elif op in ("face", "poly_h"):
            dd = head_d + 0.0001 + bias
        else:
            dd = depth[i] + bias
        keyed.append((dd, i))
    keyed.sort()
    for _, i in keyed:
        op, color, width, _b = ops[i]
        a, b = starts[i], starts[i] + sizes[i]
        if op in ("poly", "poly_c", "poly_h"):
            cv2.fillConvexPoly(img, cv2.convexHull(fixed[a:b].reshape(-1, 1, 2)), color, cv2.LINE_AA, _SHIFT)
        elif op == "line":
            cv2.line(img, pts_i[a], pts_i[a + 1], color,
                     max(1, int(round(width * hp))), cv2.LINE_AA, _SHIFT)
        elif op == "circle":
            cv2.circle(img, pts_i[a], max(1, int(round(width * hp * _SCALE))), color, -1, cv2.LINE_AA, _SHIFT)
        else:  # face: skin disc towards the nose, only when the face points to the camera
            if depth[i] > head_d + 0.1 * r_h:
                c = head_uv + 0.45 * (uv[a] - head_uv) + np.array([0.0, 0.22 * r_h * hp])
                c = np.round(c * _SCALE).astype(np.int32)
                cv2.circle(img, tuple(c.tolist()), max(1, int(round(width * hp * _SCALE))), color, -1, cv2.LINE_AA, _SHIFT)


def coco_keypoints(pts: dict, proj: _Projector) -> np.ndarray:
    """(17, 3) float32 [x, y, v] in pixels; v = 1 visible; face joints hidden when facing away."""
    xyz = np.array([pts[n] for n in COCO_JOINTS], np.float64)
    kp = np.ones((17, 3), np.float32)
    kp[:, :2] = proj.uv(xyz)
    depth = -xyz[:, 0] * proj.s + xyz[:, 2] * proj.c
    head_d = proj.depth(np.asarray(pts["head"]))
    kp[:5, 2] = (depth[:5] > head_d - 1e-6).astype(np.float32)
    return kp


# ----------------------------------------------------------------------------- tracklets
def render_tracklet(spec: TrackletSpec, seed: int, h: int, w: int) -> Tuple[List[np.ndarray], np.ndarray]:
    """Frames (list of (h, w, 3) uint8 BGR) and keypoints (T, 17, 3) of one tracklet."""
    frames, kps, _ = render_tracklet_marked(spec, seed, h, w)
    return frames, kps


def render_tracklet_marked(spec: TrackletSpec, seed: int, h: int, w: int
                           ) -> Tuple[List[np.ndarray], np.ndarray, List[Optional[dict]]]:
    """:func:`render_tracklet` plus one mark per frame: ``None`` for an ordinary frame, else a
    dict with ``corrupted: True`` (a random-value block over 60-90% of the frame), and / or
    ``occluder: [x0, y0, x1, y1]`` (pixels, a partial occluder from one side), and / or
    ``shift: [dx, dy, log_scale]`` (the misalignment applied to that frame)."""
    cam, bg, noise_pos, noise_neg = camera_assets(seed, spec.camera, h, w)
    r = rng_for(*spec.key)
    ident = spec.identity
    yaw = cam.yaw + r.normal(0.0, cam.yaw_spread)
    hp0 = h * cam.scale * ident.height * r.uniform(0.93, 1.05)
    cx0 = w * 0.5 + r.normal(0, 0.02 * w)
    foot0 = h * r.uniform(0.94, 0.99)
    if spec.kind == "junk":
        if r.random() < 0.5:  # zoomed on a body part
            hp0 *= r.uniform(1.6, 2.4)
            foot0 = h * r.uniform(1.0, 1.8)
            cx0 += r.normal(0, 0.25 * w)
        else:  # tiny figure off-centre
            hp0 *= r.uniform(0.3, 0.5)
            cx0 = w * r.uniform(0.15, 0.85)
            foot0 = h * r.uniform(0.4, 0.95)
    phase0 = r.uniform(0, 2 * math.pi)
    kr = knob_rng(spec)  # drawn in a fixed order whatever the knob values
    scale_f = math.exp(kr.uniform(-1.0, 1.0) * spec.scale_var)
    place = kr.uniform(0.0, 1.0, size=2)
    yaw_off = kr.uniform(-math.pi, math.pi) * spec.pose_var
    if spec.scale_var > 0:
        hp0 *= scale_f
        top = min(0.99, max(0.5, hp0 / h + 0.02))  # feet low enough for the head to stay in frame
        foot0 = h * (top + (0.99 - top) * place[0]) if top < 0.99 else h * (0.99 + 0.3 * place[0] * (scale_f - 1))
        cx0 += (place[1] - 0.5) * 0.4 * w * spec.scale_var
    yaw += yaw_off
    n = spec.n_frames
    corrupt_at = set(knob_frames(kr, spec.corrupt, n).tolist()) if spec.corrupt > 0 else set()
    occ_at = set(knob_frames(kr, spec.part_occlusion, n).tolist()) if spec.part_occlusion > 0 else set()
    mis = kr.normal(0.0, 1.0, size=(n, 3)) * spec.misalign
    part = kr.uniform(0.0, 1.0, size=(n, 6))  # occluder side / extent / colour; corrupted block
    # which occluders are clothes, their two garment colours and where the garments meet
    clothes = clothes_rng(spec).uniform(0.0, 1.0, size=(n, 8)) if spec.occluder_clothes > 0 else None
    marks: List[Optional[dict]] = [None] * n
    omega = 2 * math.pi * ident.gait_freq * spec.frame_step
    # background slides when the walker moves sideways in the image
    drift = math.sin(yaw) * ident.gait_freq * 0.9 * hp0 * spec.frame_step
    bg_off = r.uniform(0.3, 1.7) * w
    # one occluder per occluded tracklet: a passing pole or a static low object
    occ: Optional[Tuple[str, float, float, float, tuple]] = None
    if spec.kind != "background" and r.random() < spec.occlusion:
        col = tuple(int(v) for v in r.integers(20, 235, 3))
        if r.random() < 0.5:
            occ = ("pole", r.uniform(0.1, 0.22) * w, r.uniform(-0.3, 1.3) * w, r.uniform(-1.5, 1.5) * w / max(spec.n_frames, 1), col)
        else:
            occ = ("low", r.uniform(0.55, 0.85) * h, 0.0, 0.0, col)
    jit = r.normal(0.0, 1.0, size=(n, 4))
    flick = 1.0 + r.normal(0.0, 0.02, size=n)
    noise_off = r.integers(0, h, size=(n, 2))
    frames: List[np.ndarray] = []
    kps = np.zeros((n, 17, 3), np.float32)
    sig = cam.blur * h / 128.0
    for t in range(n):
        o = int(bg_off + drift * t) % (2 * w)
        img = bg[:, o:o + w].copy()
        hp = hp0 * (1.0 + 0.015 * jit[t, 0])
        cx = cx0 + 0.02 * w * jit[t, 1]
        foot = foot0 + 0.01 * h * jit[t, 2]
        if spec.misalign > 0:
            cx += w * mis[t, 0]
            foot += h * mis[t, 1]
            hp *= math.exp(mis[t, 2])
            marks[t] = {"shift": [round(float(w * mis[t, 0]), 2), round(float(h * mis[t, 1]), 2),
                                  round(float(mis[t, 2]), 4)]}
        proj = _Projector(yaw + 0.03 * jit[t, 3], hp, cx, foot)
        if spec.kind != "background":
            pts = body_points(ident, phase0 + omega * t)
            _draw_person(img, ident, pts, proj)
            kp = coco_keypoints(pts, proj)
        else:
            kp = np.zeros((17, 3), np.float32)
        if occ is not None:
            if occ[0] == "pole":
                x0 = occ[2] + occ[3] * t
                x1 = x0 + occ[1]
                cv2.rectangle(img, (int(x0), 0), (int(x1), h), occ[4], -1)
                hidden = (kp[:, 0] >= x0) & (kp[:, 0] <= x1)
            else:
                y0 = occ[1]
                cv2.rectangle(img, (0, int(y0)), (w, h), occ[4], -1)
                hidden = kp[:, 1] >= y0
            kp[hidden, 2] = 0.0
        if t in occ_at:  # partial occluder from one side, 25-50% of that dimension
            side, ext = int(part[t, 0] * 4) % 4, 0.25 + 0.25 * part[t, 1]
            x0, y0, x1, y1 = ((0, 0, w, ext * h), (0, (1 - ext) * h, w, h),
                              (0, 0, ext * w, h), ((1 - ext) * w, 0, w, h))[side]
            x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
            grey = int(40 + 170 * part[t, 2])
            is_clothes = clothes is not None and clothes[t, 0] < spec.occluder_clothes
            if is_clothes:
                # a passer-by's top and trousers: two saturated garment colours that the ReID
                # features respond to, unlike a grey block
                top = tuple(int(v) for v in 25 + 210 * clothes[t, 1:4])
                low = tuple(int(v) for v in 25 + 210 * clothes[t, 4:7])
                ym = int(round(y0 + (y1 - y0) * (0.35 + 0.3 * clothes[t, 7])))
                cv2.rectangle(img, (x0, y0), (x1 - 1, max(y0, ym - 1)), top, -1)
                cv2.rectangle(img, (x0, ym), (x1 - 1, y1 - 1), low, -1)
            else:
                cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (grey, int(0.9 * grey), int(0.8 * grey)), -1)
            hidden = (kp[:, 0] >= x0) & (kp[:, 0] < x1) & (kp[:, 1] >= y0) & (kp[:, 1] < y1)
            kp[hidden, 2] = 0.0
            marks[t] = dict(marks[t] or {}, occluder=[x0, y0, x1, y1])
            if is_clothes:
                marks[t]["occluder_clothes"] = True
        outside = (kp[:, 0] < 0) | (kp[:, 0] > w - 1) | (kp[:, 1] < 0) | (kp[:, 1] > h - 1)
        kp[outside, 2] = 0.0
        kp[:, 0] = np.clip(kp[:, 0], 0, w - 1)
        kp[:, 1] = np.clip(kp[:, 1], 0, h - 1)
        kps[t] = kp
        # camera: resolution loss, blur, illumination, noise
        if cam.resolution < 1.0:
            small = cv2.resize(img, (max(1, int(w * cam.resolution)), max(1, int(h * cam.resolution))), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if sig > 0.3:
            k = 2 * int(math.ceil(2.0 * sig)) + 1
            img = cv2.GaussianBlur(img, (k, k), sig)
        ny, nx = int(noise_off[t, 0]), int(noise_off[t, 1]) % w
        g = cam.brightness * float(flick[t])
        img = cv2.multiply(img, (cam.gain[0] * g, cam.gain[1] * g, cam.gain[2] * g, 0.0))
        img = cv2.add(img, noise_pos[ny:ny + h, nx:nx + w])
        img = cv2.subtract(img, noise_neg[ny:ny + h, nx:nx + w])
        if t in corrupt_at:  # random-value block over 60-90% of the frame (like random erasing)
            area = 0.6 + 0.3 * part[t, 3]
            bh, bw = min(h, int(round(h * math.sqrt(area)))), min(w, int(round(w * math.sqrt(area))))
            by, bx = int(part[t, 4] * (h - bh + 1)), int(part[t, 5] * (w - bw + 1))
            img = img.copy()
            img[by:by + bh, bx:bx + bw] = kr.integers(0, 256, size=(bh, bw, 3), dtype=np.uint8)
            inside = (kps[t, :, 0] >= bx) & (kps[t, :, 0] < bx + bw) & (kps[t, :, 1] >= by) & (kps[t, :, 1] < by + bh)
            kps[t, inside, 2] = 0.0
            marks[t] = dict(marks[t] or {}, corrupted=True, block=[bx, by, bx + bw, by + bh])
        frames.append(img)
    return frames, kps, marks


def encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for {ext}")
    return buf.tobytes()


def render_and_write(spec: TrackletSpec, seed: int, h: int, w: int) -> Tuple[np.ndarray, List[Optional[dict]]]:
    """Render one tracklet, write its frames to ``spec.paths``; returns its (T, 17, 3) keypoints
    and its per-frame marks (:func:`render_tracklet_marked`)."""
    frames, kps, marks = render_tracklet_marked(spec, seed, h, w)
    for img, path in zip(frames, spec.paths):
        ext = path[path.rfind("."):]
        with open(path, "wb") as fh:
            fh.write(encode(img, ext))
    return kps, marks
