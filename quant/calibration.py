"""Calibration and held-out inputs: from a folder of images, an array file, or the
real photographs that ship with scikit-image.

Every source yields a pool of model inputs at the model's resolution, normalised as the
model expects, and split in two disjoint parts: the calibration set (what quantizers
see) and the held-out set (what verification runs on). Everything is seeded: the same
source and options give the same arrays.
"""

from __future__ import annotations

import hashlib

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage
from PIL import Image

from mobilectl.core.errors import UserError
from mobilectl.core.manifest import CalibrationInfo, Normalization

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Real photographs bundled in scikit-image's wheel (no download): colour scenes first,
# then grey textures (converted to RGB) for variety.
DEFAULT_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
    "motorcycle_left.png", "rocket.jpg", "camera.png", "coins.png", "grass.png",
    "gravel.png", "brick.png", "moon.png",
)
DEFAULT_SOURCE = "scikit-image sample photographs"
DEFAULT_WARNING = ("calibrating on scikit-image's sample photographs: they do not "
                   "represent your data; pass --calib DIR_OR_NPY for a faithful int8 model")


def normalize(pixels: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Pixels in 0..255 -> model inputs: ``(pixel - mean) / std`` per channel."""
    mean = np.asarray(normalization.mean, dtype=np.float32)
    std = np.asarray(normalization.std, dtype=np.float32)
    return ((pixels.astype(np.float32) - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class CalibrationSet:
    """Disjoint calibration and held-out inputs (NHWC float32) and where they came from."""

    source: str
    kind: str  # "default", "images" or "array"
    calibration: np.ndarray
    held_out: np.ndarray
    skipped: tuple[str, ...] = ()

    def describe(self) -> CalibrationInfo:
        data = np.ascontiguousarray(self.calibration)
        digest = hashlib.sha256(f"{data.dtype}{data.shape}".encode() + data.tobytes())
        return CalibrationInfo(self.source, self.kind, int(len(self.calibration)),
                               int(len(self.held_out)), digest.hexdigest())


def load_calibration(
    source: str | None, *, resolution: int, normalization: Normalization,
    samples: int, held_out: int, seed: int = 0,
) -> CalibrationSet:
    """Load ``samples`` calibration and ``held_out`` verification inputs from ``source``
    (a folder of images, a .npy/.npz file, or None for the bundled photographs)."""
    if samples < 1 or held_out < 1:
        raise UserError(f"--calib-samples {samples} is not allowed: a positive integer")
    if source is None:
        files = [_skimage_dir() / name for name in DEFAULT_PHOTOS]
        pool, skipped = _image_pool(files, resolution, samples + held_out, seed)
        kind, label = "default", DEFAULT_SOURCE
    else:
        path = Path(source)
        if path.is_dir():
            files = find_images(path)
            pool, skipped = _image_pool(files, resolution, samples + held_out, seed)
            kind, label = "images", str(path)
        elif path.suffix.lower() in (".npy", ".npz") and path.is_file():
            return _array_set(path, resolution, normalization, samples, held_out)
        elif not path.exists():
            raise UserError(f"--calib {source}: no such file or directory; give a folder "
                            "of images or a .npy/.npz array")
        else:
            raise UserError(f"--calib {source}: not a folder or a .npy/.npz file")
    inputs = normalize(pool, normalization)
    return CalibrationSet(label, kind, inputs[:samples], inputs[samples:], tuple(skipped))


def check_source(source: str | None) -> None:
    """Check a ``--calib`` source before any slow work: it exists, it is a folder or a
    .npy/.npz file, and an array file reads without pickle as an (N, H, W, 3) array
    (its size is checked against the model's resolution later)."""
    if source is None:
        return
    path = Path(source)
    if path.is_dir():
        find_images(path)
        return
    if not path.exists():
        raise UserError(f"--calib {source}: no such file or directory; give a folder "
                        "of images or a .npy/.npz array")
    if path.suffix.lower() not in (".npy", ".npz") or not path.is_file():
        raise UserError(f"--calib {source}: not a folder or a .npy/.npz file")
    shape = _read_array(path).shape
    if len(shape) != 4 or shape[-1] != 3:
        raise UserError(f"--calib {source}: shape {shape} is not allowed: (N, H, W, 3) images")


def _skimage_dir() -> Path:
    return Path(skimage.__file__).parent / "data"


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for determinism."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--calib {folder}: no images (allowed: "
                        f"{', '.join(IMAGE_SUFFIXES)}, searched recursively)")
    return files


#: images are downscaled once, on decoding, to this many times the model's resolution
#: on their shorter side: a random crop of 35% of it still has the resolution
DECODE_SIDE = 3


def _decode(path: Path, resolution: int) -> tuple[Image.Image, bool]:
    """Decode once, downscaled once so the shorter side is at most ``DECODE_SIDE`` x
    ``resolution`` (every crop then resizes a small image); also say whether PIL
    warned that the image is above its decompression-bomb pixel limit."""
    limit = DECODE_SIDE * resolution
    with warnings.catch_warnings(record=True) as caught, Image.open(path) as image:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        image.draft("RGB", (limit, limit))  # JPEG decodes at a reduced scale directly
        image = image.convert("RGB")
    w, h = image.size
    if min(w, h) > limit:
        scale = limit / min(w, h)
        image = image.resize((max(limit, round(w * scale)), max(limit, round(h * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image, any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)


def decode(path: Path, resolution: int) -> Image.Image:
    """One image, decoded and downscaled as calibration images are; a file that does
    not decode is a UserError naming it."""
    try:
        return _decode(path, resolution)[0]
    except Exception as exc:  # pillow raises many types for broken files
        raise UserError(f"{path}: not a decodable image ({type(exc).__name__})") from None


def _decode_all(files: Sequence[Path], resolution: int) -> tuple[list, list[str]]:
    images, skipped, huge = [], [], 0
    for path in files:
        try:
            image, bomb = _decode(path, resolution)
        except Exception as exc:  # pillow raises many types for broken files
            skipped.append(str(path))
            log.warning("skipping %s: not a decodable image (%s)", path, type(exc).__name__)
            continue
        images.append(image)
        huge += bomb
    if huge:
        log.warning("%d calibration image(s) above PIL's %d-megapixel safety limit were "
                    "decoded once and downscaled", huge, Image.MAX_IMAGE_PIXELS // 10**6)
    if not images:
        raise UserError(f"--calib: no decodable image; the first bad file is {files[0]}")
    return images, skipped


def centre_crop(image, resolution: int) -> np.ndarray:
    """Resize the shorter side to ``resolution`` and cut the centre square."""
    w, h = image.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return np.asarray(image.crop((left, top, left + resolution, top + resolution)))


def random_crop(image, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded random square crop (35-100% of the shorter side), maybe mirrored."""
    w, h = image.size
    side = int(min(w, h) * rng.uniform(0.35, 1.0))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    crop = image.crop((left, top, left + side, top + side))
    crop = crop.resize((resolution, resolution), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop)


def _image_pool(files: Sequence[Path], resolution: int, count: int,
                seed: int) -> tuple[np.ndarray, list[str]]:
    """``count`` crops: a centre crop of each image (in a seeded order), then seeded
    random crops cycling over the images."""
    images, skipped = _decode_all(files, resolution)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    crops = [centre_crop(images[i], resolution) for i in order[:count]]
    while len(crops) < count:
        crops.append(random_crop(images[order[len(crops) % len(images)]], resolution, rng))
    return np.stack(crops), skipped


def _array_set(path: Path, resolution: int, normalization: Normalization, samples: int,
               held_out: int) -> CalibrationSet:
    array = load_array(path, resolution)
    if array.dtype == np.uint8:
        array = normalize(array, normalization)
    n_held = min(held_out, max(1, len(array) // 5))
    calib = array[: len(array) - n_held][:samples]
    return CalibrationSet(str(path), "array", calib, array[len(array) - n_held:])


def _read_array(path: Path) -> np.ndarray:
    """The one array of a .npy or .npz file, without pickle; every way it can fail is
    a UserError naming the file (an object member fails only when it is read, so
    members are read here too)."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if len(data.files) != 1:
                    raise UserError(f"--calib {path}: holds arrays {data.files}; give exactly one")
                data = data[data.files[0]]
    except UserError:
        raise
    except ValueError as exc:  # numpy refuses object arrays without pickle
        raise UserError(f"--calib {path}: cannot be read without pickle ({exc}); save a "
                        "plain numeric array") from None
    except Exception as exc:  # zip, header and IO errors of a broken file
        raise UserError(f"--calib {path}: not a readable .npy/.npz ({type(exc).__name__})") from None
    return data


def load_array(path: Path, resolution: int) -> np.ndarray:
    """Read a (N, H, W, 3) float32 (model inputs) or uint8 (pixels) array, no pickles."""
    data = _read_array(path)
    want = (resolution, resolution, 3)
    if data.ndim != 4 or tuple(data.shape[1:]) != want or len(data) < 2:
        raise UserError(f"--calib {path}: shape {tuple(data.shape)} is not allowed: "
                        f"(N, {want[0]}, {want[1]}, 3) with N >= 2")
    if data.dtype not in (np.float32, np.uint8):
        raise UserError(f"--calib {path}: dtype {data.dtype} is not allowed: float32 "
                        "(normalised inputs) or uint8 (pixels)")
    if data.dtype == np.float32 and not np.isfinite(data).all():
        raise UserError(f"--calib {path}: contains NaN or inf values")
    return np.ascontiguousarray(data)
