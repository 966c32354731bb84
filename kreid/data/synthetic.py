"""The embedded default dataset: synthetic pedestrians written in Market-1501's layout.

Each identity is defined by clothing colours and patterns, sleeve and leg
types, body shape, hair, hat and carried objects; its attributes are derived
from these. Every image adds nuisance: the camera's colour cast, background
and blur, the image's viewpoint (front/back/side), mirroring, scale and crop
jitter, partial occlusion, background clutter, noise and JPEG compression.
Colours come from a small palette so that many identities share their main
colours: a colour histogram alone cannot solve it (see
``tests/data/test_synthetic.py``), patterns, shapes and objects must be learnt.

Layout (read by ``kreid.data.datasets.load("market1501", root)``)::

    root/bounding_box_train/0001_c1s1_000151_01.jpg   training identities
    root/query/...                                     one image per test identity and camera
    root/bounding_box_test/...                         the rest, plus distractors (0000) and junk (-1)
    root/synthetic.json                                settings, counts, attributes
    root/synthetic_files.txt                           every file generate() wrote

Ownership: :func:`generate` writes only into an empty (or new) folder or
into a synthetic set it wrote itself, and removes only the files listed in
its own manifest ``synthetic_files.txt`` (each name is appended there before
the image is written, so an interrupted run is cleaned up too). A folder
holding anything else (a real Market-1501 copy, say) is refused with an
error naming the first foreign file: nothing is deleted or overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from kreid.errors import ForeignDataError
from kreid_edge.files import write_text

MANIFEST = "synthetic_files.txt"
META = "synthetic.json"
SPLITS = ("bounding_box_train", "query", "bounding_box_test")

PALETTE = np.array([  # RGB
    [20, 20, 20], [235, 235, 235], [200, 30, 30], [30, 60, 190], [40, 140, 50],
    [220, 200, 40], [120, 120, 120], [120, 70, 30], [150, 50, 160], [240, 130, 30],
], np.float32)
SKIN = np.array([[235, 195, 160], [200, 150, 110], [140, 95, 60], [95, 60, 40]], np.float32)
PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo")
OBJECTS = ("none", "backpack", "handbag", "suitcase")
ATTRIBUTE_NAMES = ("backpack", "handbag", "suitcase", "hat", "long_sleeve", "shorts",
                   "skirt", "patterned_top", "dark_top", "dark_bottom", "long_hair")
VIEWS = ("front", "back", "side")
H, W = 128, 64


@dataclasses.dataclass(frozen=True)
class Identity:
    top: int
    top2: int
    bottom: int
    shoes: int
    hair: int
    skin: int
    pattern: str
    long_sleeve: bool
    legs: str          # "trousers" | "shorts" | "skirt"
    height: float
    width: float
    long_hair: bool
    hat: bool
    obj: str
    obj_colour: int

    def attributes(self) -> list[int]:
        dark = {0, 3, 6, 7}
        return [int(v) for v in (
            self.obj == "backpack", self.obj == "handbag", self.obj == "suitcase", self.hat,
            self.long_sleeve, self.legs == "shorts", self.legs == "skirt",
            self.pattern != "plain", self.top in dark, self.bottom in dark, self.long_hair)]


def random_identity(rng: np.random.Generator) -> Identity:
    n = len(PALETTE)
    top = int(rng.integers(n))
    return Identity(
        top=top, top2=int((top + rng.integers(1, n)) % n), bottom=int(rng.choice([0, 3, 6, 7, 1, 2])),
        shoes=int(rng.choice([0, 1, 7])), hair=int(rng.choice([0, 7, 5, 6])),
        skin=int(rng.integers(len(SKIN))), pattern=str(rng.choice(PATTERNS)),
        long_sleeve=bool(rng.random() < 0.5), legs=str(rng.choice(["trousers", "shorts", "skirt"],
                                                               p=[0.6, 0.2, 0.2])),
        height=float(rng.uniform(0.86, 1.0)), width=float(rng.uniform(0.8, 1.2)),
        long_hair=bool(rng.random() < 0.35), hat=bool(rng.random() < 0.2),
        obj=str(rng.choice(OBJECTS, p=[0.4, 0.25, 0.2, 0.15])), obj_colour=int(rng.integers(n)))


@dataclasses.dataclass(frozen=True)
class Camera:
    cast: np.ndarray        # per-channel gain
    background: np.ndarray  # base RGB colour
    blur: float             # Gaussian sigma
    brightness: float


def random_camera(rng: np.random.Generator) -> Camera:
    return Camera(cast=rng.uniform(0.8, 1.2, 3).astype(np.float32),
                  background=rng.uniform(60, 200, 3).astype(np.float32),
                  blur=float(rng.uniform(0.0, 1.4)), brightness=float(rng.uniform(0.75, 1.2)))


def _rect(img, x0, y0, x1, y1, colour):
    import cv2
    cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), colour.tolist(), -1)


def _torso_pattern(img, ident: Identity, x0, y0, x1, y1, view: str):
    import cv2
    c2 = PALETTE[ident.top2].tolist()
    if ident.pattern == "hstripes":
        for y in range(int(y0) + 2, int(y1), 6):
            cv2.rectangle(img, (int(x0), y), (int(x1), y + 2), c2, -1)
    elif ident.pattern == "vstripes":
        for x in range(int(x0) + 2, int(x1), 6):
            cv2.rectangle(img, (x, int(y0)), (x + 2, int(y1)), c2, -1)
    elif ident.pattern == "checks":
        for y in range(int(y0), int(y1), 8):
            for x in range(int(x0) + ((y - int(y0)) // 8) % 2 * 4, int(x1), 8):
                cv2.rectangle(img, (x, y), (min(x + 3, int(x1)), min(y + 3, int(y1))), c2, -1)
    elif ident.pattern == "logo" and view == "front":
        cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * 0.35
        cv2.circle(img, (int(cx), int(cy)), max(3, int((x1 - x0) / 5)), c2, -1)


def draw_person(img: np.ndarray, ident: Identity, view: str, scale: float, dx: float,
                dy: float) -> None:
    """Draw one figure onto ``img`` (H x W x 3 float32 RGB) in place."""
    import cv2
    s = scale * ident.height
    cx = W / 2 + dx
    top = 6 + dy + (1 - s) * 60
    half_w = (11 if view != "side" else 7) * ident.width * scale
    skin = SKIN[ident.skin]
    # legs
    leg_top, leg_bot = top + 62 * s, top + 112 * s
    leg_w = half_w * 0.45
    bottom = PALETTE[ident.bottom]
    for side in (-1, 1) if view != "side" else (0,):
        lx = cx + side * half_w * 0.5 - leg_w / 2
        _rect(img, lx, leg_top, lx + leg_w, leg_bot, skin)
        if ident.legs == "trousers":
            _rect(img, lx, leg_top, lx + leg_w, leg_bot, bottom)
        else:
            _rect(img, lx, leg_top, lx + leg_w, leg_top + 16 * s, bottom)
        _rect(img, lx - 1, leg_bot, lx + leg_w + 1, leg_bot + 4 * s, PALETTE[ident.shoes])
    if ident.legs == "skirt":
        pts = np.array([[cx - half_w, leg_top], [cx + half_w, leg_top],
                        [cx + half_w * 1.4, leg_top + 24 * s], [cx - half_w * 1.4, leg_top + 24 * s]])
        cv2.fillPoly(img, [pts.astype(np.int32)], bottom.tolist())
    # arms
    arm_w = 4 * scale
    arm_top, arm_bot = top + 16 * s, top + 56 * s
    sleeve_bot = arm_bot if ident.long_sleeve else arm_top + 12 * s
    for side in (-1, 1) if view != "side" else (1,):
        ax = cx + side * (half_w + arm_w / 2) - arm_w / 2 if view != "side" else cx - arm_w / 2
        _rect(img, ax, arm_top, ax + arm_w, arm_bot, skin)
        _rect(img, ax, arm_top, ax + arm_w, sleeve_bot, PALETTE[ident.top])
    # torso
    t0, t1 = top + 15 * s, top + 62 * s
    _rect(img, cx - half_w, t0, cx + half_w, t1, PALETTE[ident.top])
    _torso_pattern(img, ident, cx - half_w, t0, cx + half_w, t1, view)
    # carried objects
    oc = PALETTE[ident.obj_colour]
    if ident.obj == "backpack":
        if view == "back":
            _rect(img, cx - half_w * 0.8, t0 + 4 * s, cx + half_w * 0.8, t0 + 32 * s, oc)
        elif view == "side":
            _rect(img, cx - half_w - 8 * scale, t0 + 4 * s, cx - half_w, t0 + 30 * s, oc)
        else:
            for side in (-1, 1):
                _rect(img, cx + side * half_w * 0.6 - 1, t0, cx + side * half_w * 0.6 + 1,
                      t0 + 20 * s, oc)
    elif ident.obj == "handbag":
        _rect(img, cx + half_w + 1, top + 50 * s, cx + half_w + 9 * scale, top + 64 * s, oc)
    elif ident.obj == "suitcase":
        _rect(img, cx + half_w + 3, top + 70 * s, cx + half_w + 14 * scale, top + 106 * s, oc)
        _rect(img, cx + half_w + 7, top + 62 * s, cx + half_w + 9, top + 70 * s, oc * 0.6)
    # head, hair, hat
    hy, hr = top + 8 * s, 6.5 * s
    if ident.long_hair and view != "front":
        _rect(img, cx - hr, hy, cx + hr, hy + 16 * s, PALETTE[ident.hair])
    cv2.circle(img, (int(cx), int(hy)), max(2, int(hr)), skin.tolist(), -1)
    cv2.ellipse(img, (int(cx), int(hy)), (max(2, int(hr)), max(2, int(hr))), 0, 180,
                360 if view != "back" else 540, PALETTE[ident.hair].tolist(), -1)
    if ident.hat:
        _rect(img, cx - hr - 1, hy - hr - 4 * s, cx + hr + 1, hy - hr * 0.3, PALETTE[ident.top2])


def render(ident: Identity, cam: Camera, rng: np.random.Generator,
           occlusion_prob: float = 0.25, clutter: int = 6) -> np.ndarray:
    """One uint8 RGB image (H x W) of ``ident`` seen by ``cam``."""
    import cv2
    img = np.empty((H, W, 3), np.float32)
    img[:] = cam.background * rng.uniform(0.85, 1.15)
    for _ in range(int(rng.integers(0, clutter + 1))):  # background clutter
        x, y = rng.integers(0, W), rng.integers(0, H)
        _rect(img, x, y, x + rng.integers(3, 20), y + rng.integers(3, 30),
              PALETTE[rng.integers(len(PALETTE))] * 0.5 + cam.background * 0.5)
    view = VIEWS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    draw_person(img, ident, view, scale=rng.uniform(0.88, 1.08), dx=rng.normal(0, 2.5),
                dy=rng.normal(0, 3))
    if rng.random() < occlusion_prob:  # partial occlusion from the side or below
        colour = PALETTE[rng.integers(len(PALETTE))] * 0.6 + 40
        if rng.random() < 0.5:
            y = rng.integers(H // 2, H - 10)
            _rect(img, 0, y, W, H, colour)
        else:
            x = rng.integers(0, W // 3)
            x0 = 0 if rng.random() < 0.5 else W - x - 14
            _rect(img, x0, rng.integers(0, H // 2), x0 + x + 14, H, colour)
    img *= cam.cast * cam.brightness * rng.uniform(0.85, 1.15)
    if cam.blur > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), cam.blur * rng.uniform(0.7, 1.3))
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.clip(img, 0, 255).astype(np.uint8)


def _name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    pid_s = "-1" if pid < 0 else f"{pid:04d}"
    return f"{pid_s}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"


def _manifest(root: str) -> set[str]:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return set()
    with open(path) as f:
        return {line.strip() for line in f if line.strip()}


def _first_foreign(root: str, owned: set[str]) -> str | None:
    """The first path under ``root`` that :func:`generate` did not write, or None."""
    if not os.path.isdir(root):
        return None
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry in (META, MANIFEST):
            continue
        if entry in SPLITS and os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if f"{entry}/{name}" not in owned:
                    return os.path.join(path, name)
            continue
        return path
    return None


def _clear_own_files(root: str) -> None:
    """Remove what an earlier :func:`generate` wrote here (its manifest), nothing else."""
    owned = _manifest(root)
    foreign = _first_foreign(root, owned)
    if foreign is not None:
        raise ForeignDataError(
            f"{root} is not an empty folder nor a kreid synthetic set: {foreign} was not "
            f"written by kreid.data.synthetic (no entry in {MANIFEST}). kreid never deletes "
            "or overwrites files it did not write: point the synthetic set (e.g. "
            "config.dataset.root) at a new or empty folder")
    meta_path = os.path.join(root, META)
    if os.path.exists(meta_path):     # ours: the set it describes is about to change
        os.remove(meta_path)
    for rel in sorted(owned):
        path = os.path.join(root, *rel.split("/"))
        if os.path.isfile(path):
            os.remove(path)
    if os.path.exists(os.path.join(root, MANIFEST)):
        os.remove(os.path.join(root, MANIFEST))


def generate(root: str, num_identities: int = 200, num_cameras: int = 4, seed: int = 0,
             images_per_camera: tuple[int, int] = (2, 5), train_fraction: float = 0.5,
             num_distractors: int | None = None, num_junk: int | None = None,
             jpeg_quality: int = 90) -> dict:
    """Write the synthetic dataset under ``root`` in Market-1501's layout; deterministic per seed.

    Returns a summary dict (also written to ``root/synthetic.json``). If that
    file exists with the same settings the set is not regenerated. ``root``
    must be new, empty, or a synthetic set written by this function
    (:class:`~kreid.errors.ForeignDataError` otherwise; see the module docstring).
    """
    import cv2

    if num_cameras < 2:
        raise ValueError(f"num_cameras must be >= 2 (got {num_cameras}): queries need another camera")
    if num_identities < 4:
        raise ValueError(f"num_identities must be >= 4, got {num_identities}")
    settings = dict(num_identities=num_identities, num_cameras=num_cameras, seed=seed,
                    images_per_camera=list(images_per_camera), train_fraction=train_fraction,
                    num_distractors=num_distractors, num_junk=num_junk, jpeg_quality=jpeg_quality)
    meta_path = os.path.join(root, META)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("settings") == settings:
            return meta
    _clear_own_files(root)
    rng = np.random.default_rng(seed)
    idents = [random_identity(rng) for _ in range(num_identities)]
    cams = [random_camera(rng) for _ in range(num_cameras)]
    num_train = max(2, int(round(num_identities * train_fraction)))
    dirs = {k: os.path.join(root, k) for k in SPLITS}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality]
    counts = {k: 0 for k in dirs}
    frame = 0
    manifest = open(os.path.join(root, MANIFEST), "a")

    def write(folder, pid, cam, img):
        nonlocal frame
        frame += int(rng.integers(1, 40))
        name = _name(pid, cam, 1 + cam % 6, frame, 1 + counts[folder] % 3)
        manifest.write(f"{folder}/{name}\n")    # listed before it exists: a kill leaves no orphan
        manifest.flush()
        path = os.path.join(dirs[folder], name)
        if not cv2.imwrite(path, img[..., ::-1], params):
            raise OSError(f"could not write {path}")
        counts[folder] += 1

    attributes = {}
    for i, ident in enumerate(idents):
        pid = i + 1
        attributes[pid] = ident.attributes()
        n_cams = int(rng.integers(2, num_cameras + 1))
        visited = sorted(rng.choice(num_cameras, n_cams, replace=False).tolist())
        is_train = i < num_train
        for cam in visited:
            n = int(rng.integers(images_per_camera[0], images_per_camera[1] + 1))
            for j in range(n):
                img = render(ident, cams[cam], rng)
                folder = "bounding_box_train" if is_train else ("query" if j == 0 else
                                                                "bounding_box_test")
                write(folder, pid, cam, img)
    num_test = num_identities - num_train
    for _ in range(num_distractors if num_distractors is not None else max(1, num_test // 5)):
        write("bounding_box_test", 0, int(rng.integers(num_cameras)),
              render(random_identity(rng), cams[int(rng.integers(num_cameras))], rng))
    for _ in range(num_junk if num_junk is not None else max(1, num_test // 10)):
        cam = int(rng.integers(num_cameras))  # junk: background only, or a sliver of a person
        img = render(idents[int(rng.integers(num_identities))], cams[cam], rng)
        img[:, : W // 2 + int(rng.integers(0, W // 3))] = img[:, :1]
        write("bounding_box_test", -1, cam, img)
    manifest.close()
    meta = {"settings": settings, "counts": counts, "attribute_names": list(ATTRIBUTE_NAMES),
            "attributes": {str(k): v for k, v in attributes.items()}, "num_train_ids": num_train,
            "manifest": MANIFEST}
    write_text(meta_path, json.dumps(meta))
    return meta


def load_attributes(root: str) -> tuple[tuple[str, ...], dict[int, list[int]]]:
    """The per-identity attribute table written by :func:`generate`."""
    with open(os.path.join(root, "synthetic.json")) as f:
        meta = json.load(f)
    return tuple(meta["attribute_names"]), {int(k): v for k, v in meta["attributes"].items()}
