"""Per-identity and per-camera attributes of the synthetic ReID world.

Identities are fine-grained in the sense of the FGPR benchmark (Yin et al., "Fine-grained person
re-identification", IJCV 2020): people are drawn in *groups* that wear the same uniform (top,
bottom, pattern, sleeves from a small palette), so the uniform alone does not identify a person.
What separates the members of a group are small per-identity details: hair colour / style, skin
tone, shoe colour, bag, badge, height, body proportions and gait (speed and swing).

Every random draw comes from a ``numpy.random.Generator`` seeded with a tuple that names what is
drawn, ``(seed, KIND, index, ...)``, so the result does not depend on the order of generation or
on process scheduling.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

Color = Tuple[int, int, int]  # BGR, 0..255

# Seed-sequence tags: the second word of every seed tuple, so that streams never collide.
KIND_GROUPS = 1
KIND_IDENTITY = 2
KIND_CAMERA = 3
KIND_TRACKLET = 4
KIND_SPLIT = 5
KIND_LAYOUT = 6


def rng_for(*key: int) -> np.random.Generator:
    """A generator seeded by an integer tuple (negative entries are shifted to stay >= 0)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) + 2 ** 20 for k in key])))


@dataclasses.dataclass(frozen=True)
class Uniform:
    """One entry of the clothing palette shared by a group of identities."""

    name: str
    top: Color
    bottom: Color
    pattern: str  # "plain" | "stripe" | "collar"
    pattern_color: Color
    long_sleeves: bool
    shorts: bool


# A SMALL palette: uniforms, not free clothing (BGR).
UNIFORMS: Tuple[Uniform, ...] = (
    Uniform("blue", (170, 90, 40), (90, 50, 30), "plain", (0, 0, 0), True, False),
    Uniform("white", (225, 228, 230), (60, 60, 60), "collar", (150, 60, 20), True, False),
    Uniform("green", (60, 130, 50), (50, 80, 40), "stripe", (200, 200, 200), False, False),
    Uniform("red", (40, 40, 170), (40, 40, 40), "plain", (0, 0, 0), False, False),
    Uniform("grey", (120, 120, 120), (50, 50, 55), "stripe", (30, 160, 220), True, False),
    Uniform("khaki", (110, 160, 180), (70, 110, 130), "plain", (0, 0, 0), False, True),
    Uniform("navy", (80, 30, 20), (70, 25, 15), "collar", (220, 220, 220), True, False),
    Uniform("orange", (30, 120, 230), (60, 60, 70), "stripe", (190, 190, 190), True, False),
)
UNIFORM_NAMES: Tuple[str, ...] = tuple(u.name for u in UNIFORMS)
# Uneven group sizes like FGPR (blue 200, white 45, green 113).
_GROUP_WEIGHTS = np.array([4.0, 1.2, 2.4, 1.5, 1.0, 1.3, 1.8, 1.1])

HAIR_COLORS: Tuple[Color, ...] = ((20, 20, 25), (30, 50, 90), (60, 120, 180), (170, 170, 175), (20, 30, 120))
SKIN_TONES: Tuple[Color, ...] = ((150, 180, 225), (120, 160, 210), (90, 130, 180), (60, 90, 130))
SHOE_COLORS: Tuple[Color, ...] = ((20, 20, 20), (240, 240, 240), (30, 60, 120), (200, 60, 40), (40, 40, 200), (120, 120, 120))
ACCESSORY_COLORS: Tuple[Color, ...] = ((30, 30, 30), (40, 40, 180), (160, 90, 30), (40, 150, 200), (140, 40, 140), (60, 140, 60), (210, 210, 210))
HAIR_STYLES = ("short", "long", "bald", "cap")
BAGS = ("none", "backpack", "shoulder", "handbag")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Appearance and gait of one person. Lengths are fractions of the person's height."""

    pid: int
    group: str
    uniform: Uniform
    skin: Color
    hair: Color
    hair_style: str
    cap_color: Color
    shoe: Color
    bag: str
    bag_color: Color
    badge: bool
    badge_color: Color
    height: float  # relative height, ~0.85..1.0
    shoulder: float  # shoulder half-width
    hip: float  # hip half-width
    leg: float  # leg length (hip to ankle)
    head: float  # head radius
    limb: float  # limb thickness
    gait_freq: float  # strides per frame (cycles / frame)
    swing: float  # leg swing amplitude (rad)
    arm_swing: float  # arm swing amplitude (rad)
    bob: float  # vertical bob amplitude


def assign_groups(ids: int, seed: int, n_groups: int) -> List[int]:
    """Uniform index of identities ``0..ids-1``: uneven group sizes, every group non-empty when
    ``ids >= n_groups``, a seeded permutation decides who is in which group."""
    if not 1 <= n_groups <= len(UNIFORMS):
        raise ValueError(f"groups must be in [1, {len(UNIFORMS)}], got {n_groups}")
    w = _GROUP_WEIGHTS[:n_groups] / _GROUP_WEIGHTS[:n_groups].sum()
    base = min(ids // n_groups, 1)
    sizes = np.full(n_groups, base, dtype=np.int64)
    rest = ids - sizes.sum()
    extra = np.floor(w * rest).astype(np.int64)
    sizes += extra
    # Largest remainders get the leftovers (deterministic).
    left = ids - sizes.sum()
    order = np.argsort(-(w * rest - extra), kind="stable")
    sizes[order[:left]] += 1
    labels = np.repeat(np.arange(n_groups), sizes)
    perm = rng_for(seed, KIND_GROUPS, ids, n_groups).permutation(ids)
    return [int(g) for g in labels[perm]]


def make_identity(pid: int, group: int, seed: int) -> Identity:
    """Draw the details of identity ``pid`` wearing uniform ``group``."""
    r = rng_for(seed, KIND_IDENTITY, pid)
    uni = UNIFORMS[group]
    hair_style = HAIR_STYLES[r.choice(len(HAIR_STYLES), p=[0.45, 0.3, 0.1, 0.15])]
    bag = BAGS[r.choice(len(BAGS), p=[0.3, 0.3, 0.25, 0.15])]

    def pick(colors: Sequence[Color]) -> Color:
        return colors[int(r.integers(len(colors)))]

    def jitter(c: Color, s: float) -> Color:
        return tuple(int(np.clip(v + r.normal(0.0, s), 0, 255)) for v in c)  # type: ignore[return-value]

    return Identity(
        pid=pid,
        group=uni.name,
        uniform=uni,
        skin=jitter(pick(SKIN_TONES), 8.0),
        hair=jitter(pick(HAIR_COLORS), 6.0),
        hair_style=hair_style,
        cap_color=pick(ACCESSORY_COLORS),
        shoe=pick(SHOE_COLORS),
        bag=bag,
        bag_color=pick(ACCESSORY_COLORS),
        badge=bool(r.random() < 0.4),
        badge_color=pick(ACCESSORY_COLORS[1:]),
        height=float(r.uniform(0.84, 1.0)),
        shoulder=float(r.uniform(0.095, 0.135)),
        hip=float(r.uniform(0.06, 0.085)),
        leg=float(r.uniform(0.43, 0.5)),
        head=float(r.uniform(0.058, 0.072)),
        limb=float(r.uniform(0.045, 0.065)),
        gait_freq=float(r.uniform(0.06, 0.13)),
        swing=float(r.uniform(0.25, 0.55)),
        arm_swing=float(r.uniform(0.15, 0.6)),
        bob=float(r.uniform(0.005, 0.02)),
    )


#: ``appearance`` option of the generator: ``per_identity`` (default: members of a uniform
#: group differ in hair, skin, shoes, bag, badge, body shape and gait) or ``per_group`` (FGPR's
#: "same clothes, different gait" test: every member of a group is the group's template person,
#: same appearance details and body shape; only the gait fields differ, see :func:`gait_only`).
APPEARANCE_MODES: Tuple[str, ...] = ("per_identity", "per_group")
GAIT_FIELDS: Tuple[str, ...] = ("gait_freq", "swing", "arm_swing", "bob")


def group_template(group: int, seed: int) -> Identity:
    """The person every member of uniform ``group`` looks like in ``per_group`` appearance."""
    return make_identity(2 * 10 ** 6 + group, group, seed)


def gait_only(template: Identity, own: Identity) -> Identity:
    """``template``'s appearance and body shape with ``own``'s pid and gait
    (:data:`GAIT_FIELDS`): identities that differ only in how they walk."""
    return dataclasses.replace(template, pid=own.pid, **{f: getattr(own, f) for f in GAIT_FIELDS})


def make_identities(pids: Sequence[int], seed: int, n_groups: int) -> Dict[int, Identity]:
    """Identities for ``pids`` (any order); group membership is a function of the sorted pid set."""
    ordered = sorted(pids)
    groups = assign_groups(len(ordered), seed, n_groups)
    return {pid: make_identity(pid, g, seed) for pid, g in zip(ordered, groups)}


def make_stranger(index: int, seed: int, n_groups: int) -> Identity:
    """A person outside the labelled identity set (distractor / junk tracklets, pid <= 0)."""
    r = rng_for(seed, KIND_IDENTITY, -1, index)
    return make_identity(10 ** 6 + index, int(r.integers(n_groups)), seed)


@dataclasses.dataclass(frozen=True)
class Camera:
    """Appearance of one camera view: background, illumination, blur, scale, typical viewpoint."""

    index: int  # 0-based
    sky: Color
    ground: Color
    horizon: float  # fraction of frame height
    n_blocks: int
    gain: Tuple[float, float, float]  # BGR illumination gain
    brightness: float
    gradient: float  # left-right illumination gradient amplitude
    blur: float  # Gaussian sigma in px at 128x64 (0 = sharp)
    noise: float  # noise std (0..255 scale)
    resolution: float  # down-sampling factor applied before up-sampling back (1 = none)
    scale: float  # person height / frame height
    yaw: float  # dominant walking direction seen by this camera (rad)
    yaw_spread: float


def _muted(r: np.random.Generator, lo: int, hi: int) -> Color:
    """A random colour pulled half-way to its grey level (real scenes are rarely saturated)."""
    c = r.integers(lo, hi, size=3).astype(np.float64)
    return tuple(int(v) for v in 0.5 * c + 0.5 * c.mean())  # type: ignore[return-value]


def make_camera(index: int, seed: int) -> Camera:
    r = rng_for(seed, KIND_CAMERA, index)
    warm = r.uniform(-0.25, 0.25)
    return Camera(
        index=index,
        sky=_muted(r, 60, 220),
        ground=_muted(r, 40, 170),
        horizon=float(r.uniform(0.35, 0.7)),
        n_blocks=int(r.integers(3, 9)),
        gain=(float(1.0 - warm + r.normal(0, 0.04)), float(1.0 + r.normal(0, 0.04)), float(1.0 + warm + r.normal(0, 0.04))),
        brightness=float(r.uniform(0.65, 1.2)),
        gradient=float(r.uniform(0.0, 0.3)),
        blur=float(r.choice([0.0, 0.5, 0.8, 1.2])),
        noise=float(r.uniform(1.0, 7.0)),
        resolution=float(r.choice([1.0, 1.0, 0.75, 0.5])),
        scale=float(r.uniform(0.78, 0.92)),
        yaw=float(r.choice([0.0, 0.5, 1.0, 1.5]) * np.pi + r.normal(0, 0.2)),
        yaw_spread=float(r.uniform(0.3, 1.2)),
    )
