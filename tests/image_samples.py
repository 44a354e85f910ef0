"""Small generated images of every kind the pipeline must accept or reject, and image folders in the
selfsup layout made of them (no files in the repo)."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(mode: str, size=(20, 12), image_format="PNG", seed=0, **save_args) -> bytes:
    """Random pixels; the same seed gives the same bytes (a different seed, a different image)."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode, 1)
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    pixels = pixels[:, :, 0] if channels == 1 else pixels
    image = Image.fromarray(pixels, mode="L" if mode == "P" else mode)
    if mode == "P":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 10), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (a decompression bomb's signature)."""
    original = encode("RGB", size=(4, 4))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return original[:8] + ihdr + original[8 + 25:]


def write_image_folder(root, classes=("cat", "dog"), per_class=6, test=True, unlabeled=8):
    """root/labeled/<class>/{0..per_class-1}.png, root/test/<class>/{0,1,2}.png (when `test`) and
    `unlabeled` JPEGs in root/unlabeled/ and root/unlabeled/batch1/deeper/. Every image different (its own
    seed), so none is a copy of an eval image. Returns root (a pathlib.Path)."""
    seed = 0
    for split, count in (("labeled", per_class), ("test", 3 if test else 0)):
        for name in classes:
            folder = root / split / name
            for index in range(count):
                folder.mkdir(parents=True, exist_ok=True)
                seed += 1
                (folder / f"{index}.png").write_bytes(encode("RGB", size=(8 + index, 8), seed=seed))
    nested = root / "unlabeled" / "batch1" / "deeper"
    nested.mkdir(parents=True, exist_ok=True)
    for index in range(unlabeled):
        seed += 1
        (nested if index % 2 else root / "unlabeled").joinpath(f"u{index}.jpg").write_bytes(
            encode("RGB", image_format="JPEG", seed=seed))
    return root


GOOD_IMAGES = {
    "grayscale png": lambda: encode("L"),
    "rgba png": lambda: encode("RGBA"),
    "palette png": lambda: encode("P"),
    "rgb jpeg": lambda: encode("RGB", image_format="JPEG"),
    "animated gif": animated_gif,
    "bmp": lambda: encode("RGB", image_format="BMP"),
    "tiny 1x1 png": lambda: encode("RGB", size=(1, 1)),
    "large 1000x700 jpeg": lambda: encode("RGB", size=(1000, 700), image_format="JPEG"),
}
