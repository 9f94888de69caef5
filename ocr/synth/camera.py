"""A phone camera looking at a filled page: pose, scene, light, optics, sensor and JPEG.

`plan_shot` draws the geometry first (photo size, page pose, where the page sits in the frame) so the page canvas
can be drawn at just the resolution the photo needs; `take_photo` then warps the canvas once into a cluttered
scene and applies light, blur, noise and the unusable-photo defects.

The truth homography `H` maps page mm to photo px for the flat page; curl and folds move points by at most
`nonplanar_max_px` away from it (recorded in the truth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ocr.geometry import local_scale_px_per_mm, project
from ocr.templates.schema import Template

MIN_USABLE_BOX_PX = 32.0  # usable photos get at least this many pixels per digit box side
ASPECTS = (4 / 3, 16 / 9)


@dataclass
class Shot:
    width: int
    height: int
    H: np.ndarray  # page mm -> photo px
    orientation: int
    roll_deg: float
    tilt_deg: float
    box_px: float
    reason: str | None  # the unreadable reason this shot was planned for
    effects: list[str] = field(default_factory=list)


def _rot(ax: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if ax == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if ax == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _pose_homography(t: Template, orientation: int, roll: float, pitch: float, yaw: float, dist: float) -> np.ndarray:
    """Page mm -> normalised image plane for a pinhole camera (f = 1) looking at the page from `dist` mm."""
    w, h = t.page_size.width_mm, t.page_size.height_mm
    Tc = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    R = _rot("x", pitch) @ _rot("y", yaw) @ _rot("z", orientation + roll)
    P = np.column_stack([R[:, 0], R[:, 1], np.array([0, 0, dist])])
    return P @ Tc


def box_quads(t: Template) -> list[list[tuple[float, float]]]:
    return [b.corners() for f in t.fields for b in f.boxes]


def median_box_px(t: Template, H: np.ndarray) -> float:
    sides = [local_scale_px_per_mm(H, *b.center) * min(b.w, b.h) for f in t.fields for b in f.boxes]
    return float(np.median(sides))


def min_box_px(t: Template, H: np.ndarray) -> float:
    return float(min(local_scale_px_per_mm(H, *b.center) * min(b.w, b.h) for f in t.fields for b in f.boxes))


def page_corners(t: Template) -> list[tuple[float, float]]:
    w, h = t.page_size.width_mm, t.page_size.height_mm
    return [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]


def inside(pts: np.ndarray, width: int, height: int, margin: float = 0.0) -> np.ndarray:
    pts = np.asarray(pts).reshape(-1, 2)
    return (pts[:, 0] >= margin) & (pts[:, 0] <= width - 1 - margin) & (pts[:, 1] >= margin) & (pts[:, 1] <= height - 1 - margin)


def plan_shot(
    rng: np.random.Generator, t: Template, megapixels: tuple[float, float], reason: str | None
) -> Shot:
    """Draw the photo size and the page pose; guarantees usable shots are usable and cut-off shots are cut off."""
    for _attempt in range(30):
        orientation = int(rng.choice([0, 90, 180, 270], p=[0.55, 0.15, 0.15, 0.15]))
        roll = float(np.clip(rng.normal(0, 3.5), -10, 10))
        tilt = float(rng.uniform(0, 20) if rng.random() < 0.7 else rng.uniform(20, 35))
        phi = rng.uniform(0, 2 * math.pi)
        pitch, yaw = tilt * math.cos(phi), tilt * math.sin(phi)
        long_mm = max(t.page_size.width_mm, t.page_size.height_mm)
        dist = long_mm * rng.uniform(0.9, 1.4)
        P = _pose_homography(t, orientation, roll, pitch, yaw, dist)
        c = project(P, page_corners(t))
        bw, bh = float(np.ptp(c[:, 0])), float(np.ptp(c[:, 1]))
        mp = rng.uniform(*megapixels) * 1e6
        aspect = float(rng.choice(ASPECTS, p=[0.8, 0.2]))
        portrait = (bh >= bw) if rng.random() < 0.85 else (bh < bw)
        long_px = math.sqrt(mp * aspect)
        short_px = long_px / aspect
        W, Hh = (short_px, long_px) if portrait else (long_px, short_px)
        if reason == "too_small":
            fill = rng.uniform(0.22, 0.4)
        elif reason == "cut_off":
            fill = rng.uniform(0.85, 1.1)
        else:
            fill = rng.uniform(0.8, 0.94)
        s = fill * min(W / bw, Hh / bh)
        # position: the slack left after the page is placed
        cx_lo, cy_lo = c[:, 0].min() * s, c[:, 1].min() * s
        slack_x, slack_y = W - bw * s, Hh - bh * s
        tx = -cx_lo + (rng.uniform(0, slack_x) if slack_x > 0 else slack_x / 2)
        ty = -cy_lo + (rng.uniform(0, slack_y) if slack_y > 0 else slack_y / 2)
        if reason == "cut_off":
            side = int(rng.integers(4))
            cut = rng.uniform(0.1, 0.3)
            dx = (bw * s * cut + max(slack_x, 0) / 2) * (1 if side == 0 else -1 if side == 1 else 0)
            dy = (bh * s * cut + max(slack_y, 0) / 2) * (1 if side == 2 else -1 if side == 3 else 0)
            tx, ty = tx + dx, ty + dy
        S = np.array([[s, 0, tx], [0, s, ty], [0, 0, 1]])
        H = S @ P
        H /= H[2, 2]
        W, Hh = int(round(W)), int(round(Hh))
        box = median_box_px(t, H)
        if reason != "too_small" and min_box_px(t, H) < MIN_USABLE_BOX_PX:
            # a bigger sensor (more MP) for the same framing keeps the boxes readable
            k = MIN_USABLE_BOX_PX / min_box_px(t, H) * 1.02
            H = np.diag([k, k, 1.0]) @ H
            W, Hh = int(round(W * k)), int(round(Hh * k))
            box = median_box_px(t, H)
        corners_in = inside(project(H, page_corners(t)), W, Hh, 2)
        boxes_in = inside(project(H, [p for q in box_quads(t) for p in q]), W, Hh)
        frame_in = inside(project(H, t.frame.points), W, Hh)
        if reason == "cut_off":
            if boxes_in.all() and frame_in.all():
                continue
        elif not corners_in.all():
            continue
        if reason == "too_small" and min_box_px(t, H) >= 20:
            continue
        return Shot(width=W, height=Hh, H=H, orientation=orientation, roll_deg=roll, tilt_deg=tilt, box_px=box, reason=reason)
    raise RuntimeError("could not plan a shot")  # pragma: no cover - 30 tries always succeed in practice


# --- scene -------------------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, W: int, H: int) -> np.ndarray:
    """A cluttered table/floor: base colour, texture, random shapes (drawn small, upscaled)."""
    w, h = max(8, W // 6), max(8, H // 6)
    base = rng.uniform(40, 200, 3)
    bg = np.empty((h, w, 3), np.float32)
    bg[:] = base
    tex = cv2.resize(rng.normal(0, 18, (max(2, h // 8), max(2, w // 8), 3)).astype(np.float32), (w, h))
    bg += tex
    if rng.random() < 0.5:  # wood grain / cloth stripes
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        ang = rng.uniform(0, math.pi)
        stripes = np.sin((xx * math.cos(ang) + yy * math.sin(ang)) / rng.uniform(2, 10)) * rng.uniform(5, 20)
        bg += stripes[..., None]
    for _ in range(int(rng.integers(3, 12))):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        p = (int(rng.integers(w)), int(rng.integers(h)))
        if kind == 0:
            q = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.rectangle(bg, p, q, col, -1)
        elif kind == 1:
            cv2.circle(bg, p, int(rng.integers(3, max(4, w // 5))), col, -1, cv2.LINE_AA)
        else:
            q = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.line(bg, p, q, col, int(rng.integers(1, 6)), cv2.LINE_AA)
    bg = cv2.GaussianBlur(bg, (0, 0), 0.8)
    return cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)


def _light(rng: np.random.Generator, W: int, H: int, shot: Shot, reason: str | None, effects: list[str]) -> np.ndarray:
    """A low-resolution BGR gain map (uneven light, shadows, vignetting, colour cast), upscaled; 128 = gain 1."""
    w, h = max(8, W // 16), max(8, H // 16)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx /= w
    yy /= h
    g = np.ones((h, w), np.float32) * rng.uniform(0.85, 1.1)
    # uneven light: a linear gradient
    ang = rng.uniform(0, 2 * math.pi)
    g *= 1.0 + rng.uniform(0, 0.3) * ((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang))
    # vignetting
    g *= 1.0 - rng.uniform(0, 0.25) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    if rng.random() < 0.35:  # a soft shadow (phone, hand, head)
        effects.append("shadow")
        m = np.zeros((h, w), np.float32)
        pts = (rng.uniform(-0.2, 1.2, (int(rng.integers(3, 6)), 2)) * [w, h]).astype(np.int32)
        cv2.fillPoly(m, [cv2.convexHull(pts)], 1.0)
        m = cv2.GaussianBlur(m, (0, 0), rng.uniform(1, 4))
        g *= 1.0 - rng.uniform(0.15, 0.45) * m
    if reason == "too_dark":
        effects.append("dark")
        g *= rng.uniform(0.08, 0.16)
    elif reason == "too_bright":
        g *= rng.uniform(1.8, 2.6)
    cast = np.array([1.0, 1.0, 1.0], np.float32)
    if rng.random() < 0.4:  # warm indoor light / yellowed paper
        effects.append("yellow_cast")
        cast = np.array([rng.uniform(0.65, 0.85), rng.uniform(0.9, 1.0), 1.0], np.float32)
    gain = g[..., None] * cast[None, None, :]
    gain8 = np.clip(gain * 128, 0, 255).astype(np.uint8)
    return cv2.resize(gain8, (W, H), interpolation=cv2.INTER_LINEAR)


def _curl_maps(rng, shot: Shot, t: Template, dpmm: float, effects: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """remap() maps (photo px -> canvas px) with a paper bow and/or a fold; also the largest displacement in px."""
    W, H = shot.width, shot.height
    step = 8
    gw, gh = W // step + 2, H // step + 2
    u, v = np.meshgrid(np.arange(gw, dtype=np.float64) * step, np.arange(gh, dtype=np.float64) * step)
    Hinv = np.linalg.inv(shot.H)
    den = Hinv[2, 0] * u + Hinv[2, 1] * v + Hinv[2, 2]
    x = (Hinv[0, 0] * u + Hinv[0, 1] * v + Hinv[0, 2]) / den
    y = (Hinv[1, 0] * u + Hinv[1, 1] * v + Hinv[1, 2]) / den
    pw, ph = t.page_size.width_mm, t.page_size.height_mm
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    amp_mm = 0.0
    if rng.random() < 0.5:
        effects.append("curl")
        a = rng.uniform(0.4, 1.6) * max(pw, ph) / 600  # mm of apparent shift at the bow's middle
        if rng.random() < 0.5:
            dy += a * np.sin(np.pi * np.clip(x / pw, 0, 1))
        else:
            dx += a * np.sin(np.pi * np.clip(y / ph, 0, 1))
        amp_mm += a
    if rng.random() < 0.3:
        effects.append("fold")
        a = rng.uniform(0.3, 1.2) * max(pw, ph) / 600
        if rng.random() < 0.5:
            pos = rng.uniform(0.3, 0.7) * ph
            dy += a * np.tanh((y - pos) / 3.0)
        else:
            pos = rng.uniform(0.3, 0.7) * pw
            dx += a * np.tanh((x - pos) / 3.0)
        amp_mm += a
    mx = ((x - dx) * dpmm).astype(np.float32)
    my = ((y - dy) * dpmm).astype(np.float32)
    # resize() aligns pixel centres; the grid samples sat at multiples of `step`, so shift by half a cell
    off = (step - 1) / 2.0
    full_x = cv2.resize(mx, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)
    full_y = cv2.resize(my, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)
    M = np.float32([[1, 0, off], [0, 1, off]])
    full_x = cv2.warpAffine(full_x, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    full_y = cv2.warpAffine(full_y, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    scale = local_scale_px_per_mm(shot.H, pw / 2, ph / 2)
    return full_x, full_y, float(amp_mm * scale * 1.3)


def _occluder(rng, shot: Shot, t: Template, img: np.ndarray, must_cover: bool) -> tuple[str, np.ndarray] | None:
    """Draw a finger / pen / sheet of paper over the photo; returns (kind, low-res coverage mask) or None."""
    W, H = shot.width, shot.height
    scale = 4
    mask = np.zeros((H // scale + 1, W // scale + 1), np.uint8)
    kind = str(rng.choice(["finger", "pen", "paper"], p=[0.6, 0.25, 0.15]))
    boxes = [b for f in t.fields for b in f.boxes]
    if must_cover:
        b = boxes[int(rng.integers(len(boxes)))]
        target = project(shot.H, [b.center])[0]
    else:
        # near a page corner but away from the boxes: how people hold a page down
        k = int(rng.integers(4))
        target = project(shot.H, [page_corners(t)[k]])[0] * 0.85 + np.array([W, H]) * 0.075
    edge = int(rng.integers(4))
    start = {0: (target[0] + rng.normal(0, W * 0.1), -50), 1: (target[0] + rng.normal(0, W * 0.1), H + 50),
             2: (-50, target[1] + rng.normal(0, H * 0.1)), 3: (W + 50, target[1] + rng.normal(0, H * 0.1))}[edge]
    box_px = shot.box_px
    if kind == "finger":
        thick = int(box_px * rng.uniform(0.9, 1.4))
        col = tuple(float(v) for v in (rng.uniform(60, 120), rng.uniform(110, 160), rng.uniform(170, 225)))
    elif kind == "pen":
        thick = int(box_px * rng.uniform(0.3, 0.5))
        col = tuple(float(v) for v in rng.uniform(10, 200, 3))
    else:
        thick = int(box_px * rng.uniform(2.5, 5))
        col = tuple(float(v) for v in rng.uniform(200, 250, 3))
    p0 = (int(start[0]), int(start[1]))
    p1 = (int(target[0]), int(target[1]))
    cv2.line(img, p0, p1, col, max(3, thick), cv2.LINE_AA)
    cv2.line(mask, (p0[0] // scale, p0[1] // scale), (p1[0] // scale, p1[1] // scale), 1, max(1, thick // scale))
    # a darker edge line gives the finger some volume
    if kind == "finger":
        cv2.line(img, p0, p1, tuple(c * 0.8 for c in col), max(1, thick // 6), cv2.LINE_AA)
    return kind, mask


def covered_boxes(t: Template, shot: Shot, mask: np.ndarray, scale: int = 4, min_fraction: float = 0.05) -> set[tuple[str, int]]:
    """(field id, box index) of boxes whose area the occluder mask covers by at least `min_fraction`."""
    out = set()
    g = (np.arange(5) + 0.5) / 5
    for f in t.fields:
        for i, b in enumerate(f.boxes):
            pts = [(b.x + u * b.w, b.y + v * b.h) for u in g for v in g]
            p = (project(shot.H, pts) / scale).astype(int)
            ok = (p[:, 0] >= 0) & (p[:, 0] < mask.shape[1]) & (p[:, 1] >= 0) & (p[:, 1] < mask.shape[0])
            hits = mask[p[ok, 1], p[ok, 0]].sum() if ok.any() else 0
            if hits / len(pts) >= min_fraction:
                out.add((f.id, i))
    return out


def _glare(rng, shot: Shot, t: Template, img: np.ndarray) -> None:
    """A saturated specular blob over the digit boxes (flash or a lamp on glossy paper)."""
    boxes = [b for f in t.fields for b in f.boxes]
    b = boxes[int(rng.integers(len(boxes)))]
    c = project(shot.H, [b.center])[0]
    r = shot.box_px * rng.uniform(2.5, 5)
    x0, y0 = int(max(0, c[0] - 2 * r)), int(max(0, c[1] - 2 * r))
    x1, y1 = int(min(shot.width, c[0] + 2 * r)), int(min(shot.height, c[1] + 2 * r))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ax = rng.uniform(0.6, 1.0)
    d2 = ((xx - c[0]) / r) ** 2 + ((yy - c[1]) / (r * ax)) ** 2
    g = np.clip(1.6 * np.exp(-d2 * 1.2), 0, 1)[..., None]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(roi + (255 - roi) * g + 40 * g, 0, 255).astype(np.uint8)


def motion_kernel(rng, length: float) -> np.ndarray:
    """A hand-shake blur kernel: a line `length` px long at a random angle (also used on training cells)."""
    n = max(3, int(round(length)) | 1)
    k = np.zeros((n, n), np.float32)
    ang = rng.uniform(0, 180)
    c = n // 2
    dx, dy = math.cos(math.radians(ang)) * c, math.sin(math.radians(ang)) * c
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


@dataclass
class PhotoResult:
    image: np.ndarray  # BGR
    effects: list[str]
    nonplanar_px: float
    occluder: str | None
    covered: set[tuple[str, int]]


def take_photo(
    rng: np.random.Generator, canvas: np.ndarray, dpmm: float, t: Template, shot: Shot, noise_seed: int,
    occluder_rate: float = 0.08,
    nonplanar_rate: float = 0.6,
) -> PhotoResult:
    reason = shot.reason
    effects = list(shot.effects)
    W, H = shot.width, shot.height
    img = _background(rng, W, H)
    canvas_from_page = np.diag([dpmm, dpmm, 1.0])
    if reason in (None, "blurry", "too_dark", "glare", "occluded", "too_bright") and rng.random() < nonplanar_rate:
        mx, my, nonplanar = _curl_maps(rng, shot, t, dpmm, effects)
        if nonplanar > 0:
            cv2.remap(canvas, mx, my, cv2.INTER_LINEAR, dst=img, borderMode=cv2.BORDER_TRANSPARENT)
        else:
            M = shot.H @ np.linalg.inv(canvas_from_page)
            cv2.warpPerspective(canvas, M, (W, H), dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    else:
        nonplanar = 0.0
        M = shot.H @ np.linalg.inv(canvas_from_page)
        cv2.warpPerspective(canvas, M, (W, H), dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    occluder, covered = None, set()
    want_occluder = reason == "occluded" or (reason is None and rng.random() < occluder_rate)
    if want_occluder:
        for _ in range(6):
            trial = img.copy() if reason is None else img
            occ = _occluder(rng, shot, t, trial, must_cover=reason == "occluded")
            kind, mask = occ
            cov = covered_boxes(t, shot, mask)
            frame_hidden = covered_points(shot, t.frame.points, mask)
            if reason == "occluded" and cov:
                occluder, covered = kind, cov
                break
            if reason is None and not cov and not frame_hidden:
                img, occluder = trial, kind
                break
        if reason == "occluded" and not covered:
            raise RuntimeError("occluder missed every box")  # pragma: no cover
    if occluder:
        effects.append(f"occluder_{occluder}")
    img = cv2.multiply(img, _light(rng, W, H, shot, reason, effects), scale=1 / 128)
    if reason == "glare":
        effects.append("glare")
        _glare(rng, shot, t, img)
    # optics: defocus and hand shake
    if reason == "blurry":
        effects.append("extreme_blur")
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), shot.box_px * rng.uniform(0.15, 0.3))
        else:
            img = cv2.filter2D(img, -1, motion_kernel(rng, shot.box_px * rng.uniform(0.6, 1.0)))
    else:
        sigma = rng.uniform(0.3, 1.1) * max(1.0, shot.box_px / 60)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        if rng.random() < 0.15:
            effects.append("motion_blur")
            img = cv2.filter2D(img, -1, motion_kernel(rng, min(7.0, shot.box_px * 0.08 + 2)))
    # sensor noise (cv2's RNG, seeded per photo for determinism)
    cv2.setRNGSeed(int(noise_seed) & 0x7FFFFFFF)
    noise = np.empty((H, W), np.int16)
    cv2.randn(noise, 0, float(rng.uniform(1.5, 6.0)))
    pos = cv2.cvtColor(np.clip(noise, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    neg = cv2.cvtColor(np.clip(-noise, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    img = cv2.subtract(cv2.add(img, pos), neg)
    return PhotoResult(image=img, effects=effects, nonplanar_px=nonplanar, occluder=occluder, covered=covered)


def covered_points(shot: Shot, pts, mask: np.ndarray, scale: int = 4) -> bool:
    p = (project(shot.H, pts) / scale).astype(int)
    ok = (p[:, 0] >= 0) & (p[:, 0] < mask.shape[1]) & (p[:, 1] >= 0) & (p[:, 1] < mask.shape[0])
    return bool(ok.any() and mask[p[ok, 1], p[ok, 0]].any())
