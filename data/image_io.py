"""Reading and writing images as 8-bit RGB arrays (OpenCV decoding, which is the fast path for training).

Every image enters the project through `read_rgb`: grayscale, RGBA, palette and 16-bit files come out as
uint8 H x W x 3 RGB (alpha is dropped, 16-bit values are rounded to 8 bits), so no other module deals with
formats.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch


IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(ValueError):
    """An image file that cannot be decoded (unreadable, truncated, empty or of an unsupported kind)."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into a uint8 H x W x 3 RGB array.

    Raises:
        ImageReadError: naming the file, when it is missing, empty, truncated or not an image.
    """
    path = Path(path)
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f'{path}: cannot read the file ({err})') from err
    if buffer.size == 0:
        raise ImageReadError(f'{path}: the file is empty (0 bytes); re-download or remove it')
    # IMREAD_COLOR turns gray, gray+alpha, RGBA and palette images into 3 channels; ANYDEPTH keeps 16-bit
    # values so that they are rounded here rather than truncated by the decoder.
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise ImageReadError(f'{path}: not a decodable image (truncated or corrupt?); re-download or remove it')
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f'{path}: {image.dtype} pixels are not supported; convert it to 8- or 16-bit')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_rgb(image: np.ndarray, suffix: str) -> bytes:
    """A uint8 H x W x 3 RGB array encoded in the format of the file extension `suffix` (JPEG at quality 95)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected a uint8 HxWx3 array to encode, got {image.dtype} {image.shape}')
    if suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f'cannot encode {suffix!r} images; use one of {IMAGE_EXTENSIONS}')
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix.lower() in ('.jpg', '.jpeg') else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f'OpenCV failed to encode a {image.shape} image as {suffix}')
    return encoded.tobytes()


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Encode a uint8 H x W x 3 RGB array to `path` (format from its extension, `encode_rgb`); creates parent
    folders."""
    path = Path(path)
    try:
        encoded = encode_rgb(image, path.suffix)
    except ValueError as error:
        raise ValueError(f'write_rgb({path}): {error}') from error
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # not ndarray.tofile: it does not check the final flush, so a full disk left a short file silently
        with open(path, 'wb') as handle:
            handle.write(encoded)
    except OSError as error:
        raise OSError(error.errno, f'write_rgb({path}): could not write the image ({error.strerror}); is the disk '
                                   'full? Free space or write elsewhere') from error


def _is_image(path: Path) -> bool:
    """An image by extension (case-insensitive), excluding hidden files such as macOS `._name.png`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith('.')


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files in `folder` (and its subfolders when `recursive`, following links to folders, each real
    folder once), sorted; hidden files and folders are skipped."""
    folder = Path(folder)
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    found, visited = [], set()
    for parent, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in visited:  # a link back up (a loop) or a second link to one folder: list its images once
            folders[:] = []
            continue
        visited.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith('.'))
        found.extend(Path(parent) / name for name in files if _is_image(Path(name)))
    return sorted(found)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 3 x H x W in [0, 1]."""
    import torch  # here, so that reading and checking images (python -m data.check) starts without torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A 3 x H x W float tensor in [0, 1] -> the H x W x 3 uint8 array that is saved and scored, quantised as the
    official testers' `torchvision.utils.save_image`: x 255, + 0.5, clamped to [0, 255], truncated (halves round
    up, where `torch.round` would round them to even)."""
    import torch

    array = image.detach().float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()
