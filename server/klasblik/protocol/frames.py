"""Binary frames: the agent's 24-byte ``KBF1`` header plus the encoded image, and the
dashboard's ``KBV1`` prefix naming the student in front of the agent frame as it came."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from klasblik.protocol.codes import (
    DEFAULT_MAX_FRAME_BYTES,
    ErrorCode,
)
from klasblik.protocol.errors import ProtocolError
from klasblik.protocol.images import image_size

__all__ = [
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "VIEWER_MAGIC",
    "Encoding",
    "FrameHeader",
    "FrameKind",
    "decode_frame",
    "decode_viewer_frame",
    "encode_frame",
    "encode_viewer_frame",
    "viewer_frame_prefix",
]

FRAME_MAGIC: Final = b"KBF1"
VIEWER_MAGIC: Final = b"KBV1"

# magic, header version, kind, encoding, flags, width, height, seq, captured_at_ms
_FRAME_STRUCT: Final = struct.Struct(">4sBBBBHHIQ")
FRAME_HEADER_SIZE: Final = _FRAME_STRUCT.size  # 24
_VIEWER_STRUCT: Final = struct.Struct(">4sH")  # magic, student ref length


class FrameKind:
    GRID: Final = 1
    FOCUS: Final = 2
    ALL: Final = (1, 2)


class Encoding:
    JPEG: Final = 1
    WEBP: Final = 2
    PNG: Final = 3
    ALL: Final = (1, 2, 3)
    MIME: Final = {1: "image/jpeg", 2: "image/webp", 3: "image/png"}
    BY_NAME: Final = {"jpeg": 1, "webp": 2, "png": 3}


# Leading bytes of each image encoding, so a frame cannot claim to be what it is not.
_SIGNATURES: Final = {
    Encoding.JPEG: (b"\xff\xd8\xff",),
    Encoding.PNG: (b"\x89PNG\r\n\x1a\n",),
    Encoding.WEBP: (b"RIFF",),
}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 24-byte header in front of every agent frame."""

    kind: int
    encoding: int
    width: int
    height: int
    seq: int
    captured_at_ms: int
    flags: int = 0
    version: int = 1

    @property
    def mime(self) -> str:
        return Encoding.MIME[self.encoding]


def encode_frame(header: FrameHeader, image: bytes) -> bytes:
    """Build an agent frame: header + image bytes."""
    return (
        _FRAME_STRUCT.pack(
            FRAME_MAGIC,
            header.version,
            header.kind,
            header.encoding,
            header.flags,
            header.width,
            header.height,
            header.seq & 0xFFFFFFFF,
            header.captured_at_ms,
        )
        + image
    )


def decode_frame(
    data: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES, *, check_image: bool = True
) -> FrameHeader:
    """Validate an agent frame and return its header; the image is ``data[24:]``.

    Checks size, magic, version, kind, encoding, dimensions, that the image bytes start
    with the signature of the encoding named, and that the image's own header gives the
    same width and height as the frame header (``bad_image`` otherwise; skipped with
    ``check_image=False``, for frames the server checked already). Never decodes the image.
    """
    if len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {len(data)} bytes is over the limit of {max_bytes}",
        )
    if len(data) < len(FRAME_MAGIC) or data[:4] != FRAME_MAGIC:
        raise ProtocolError(ErrorCode.BAD_MAGIC, "binary message must start with KBF1")
    if len(data) <= FRAME_HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame has no image after its header")
    _, version, kind, encoding, flags, width, height, seq, ts = _FRAME_STRUCT.unpack_from(data)
    if version != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION, f"frame header version {version} not supported"
        )
    if kind not in FrameKind.ALL:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown frame kind {kind}")
    if encoding not in Encoding.ALL:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown image encoding {encoding}")
    if not (1 <= width <= 7680 and 1 <= height <= 4320):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"implausible size {width}x{height}")
    image_start = bytes(data[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + 8])
    if not any(image_start.startswith(sig) for sig in _SIGNATURES[encoding]):
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"image bytes do not look like {Encoding.MIME[encoding]}",
        )
    real = image_size(encoding, memoryview(data)[FRAME_HEADER_SIZE:]) if check_image else None
    if real is not None and real != (width, height):
        raise ProtocolError(
            ErrorCode.BAD_IMAGE,
            f"the image is {real[0]}x{real[1]} but its frame header says {width}x{height}",
        )
    return FrameHeader(kind, encoding, width, height, seq, ts, flags, version)


def viewer_frame_prefix(student_id: int) -> bytes:
    """The bytes the server puts in front of an agent frame for dashboards."""
    ref = str(student_id).encode("ascii")
    return _VIEWER_STRUCT.pack(VIEWER_MAGIC, len(ref)) + ref


def encode_viewer_frame(student_id: int, frame: bytes) -> bytes:
    """A viewer frame: ``KBV1``, ref length, student ref, then the agent frame as is."""
    return viewer_frame_prefix(student_id) + frame


def decode_viewer_frame(data: bytes) -> tuple[int, FrameHeader, bytes]:
    """Split a viewer frame into (student id, agent frame header, image bytes)."""
    if len(data) < _VIEWER_STRUCT.size or data[:4] != VIEWER_MAGIC:
        raise ProtocolError(ErrorCode.BAD_MAGIC, "viewer frame must start with KBV1")
    _, ref_len = _VIEWER_STRUCT.unpack_from(data)
    start = _VIEWER_STRUCT.size
    ref = data[start : start + ref_len]
    if len(ref) != ref_len or not ref.isdigit():
        raise ProtocolError(ErrorCode.BAD_FRAME, "viewer frame has a bad student ref")
    frame = data[start + ref_len :]
    header = decode_frame(frame, max_bytes=len(frame), check_image=False)  # the server did
    return int(ref), header, bytes(frame[FRAME_HEADER_SIZE:])
