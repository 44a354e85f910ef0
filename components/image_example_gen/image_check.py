"""Checks that an encoded image can be decoded the way the Trainer and the served model decode it."""

import io
from typing import Optional

import tensorflow as tf
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def has_image_extension(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def image_problem(encoded: bytes, max_pixels: int) -> Optional[str]:
    """Why `encoded` cannot be used as a training image, or None when it can.

    The declared size is read from the header first (Pillow reads only the header), so a
    decompression bomb is rejected without decoding it. The bytes are then decoded with
    `tf.io.decode_image(channels=3, expand_animations=False)`, the decoder the Trainer and the
    exported model use, so an image that passes here also decodes there.

    Args:
      encoded: the file's bytes.
      max_pixels: the largest width * height accepted.

    Returns:
      A short reason ("empty file", "not a decodable image: ...", "too large: ...") or None.
    """
    if not encoded:
        return "empty file"
    try:
        with Image.open(io.BytesIO(encoded)) as header:
            width, height = header.size
    except Image.DecompressionBombError as error:  # Pillow's own guard, far above max_pixels
        return f"too large: {error}"
    except Image.UnidentifiedImageError:
        return "not a decodable image: unrecognised image format"
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for broken headers.
        return f"not a decodable image: {type(error).__name__}: {error}"
    if width * height > max_pixels:
        return f"too large: {width}x{height} pixels exceeds data.max_image_pixels={max_pixels}"
    if width < 1 or height < 1:
        return f"empty image: {width}x{height}"
    try:
        tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, tf.errors.DataLossError) as error:
        message = str(error.message).splitlines()[0] if error.message else type(error).__name__
        return f"not a decodable image: {message}"
    return None
