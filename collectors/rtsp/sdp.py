"""What a camera's DESCRIBE answer says about its video: codec and picture size.

The SDP names the codec in `a=rtpmap` (or by static payload type 26 for MJPEG). The picture
size comes, in this order, from an explicit attribute some cameras add (`a=framesize:96
1920-1080`, `a=x-dimensions:1920,1080`, `a=cliprect:0,0,1080,1920`), else from the sequence
parameter set that H.264 (`sprop-parameter-sets`) and H.265 (`sprop-sps`) cameras put in
`a=fmtp`, parsed here bit by bit (ITU-T H.264 7.3.2.1.1, H.265 7.3.2.2). MJPEG carries its size
in every RTP packet only, so it is known only from decoded frames.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

CODECS = {"H264": "h264", "H265": "h265", "HEVC": "h265", "JPEG": "mjpeg", "MP4V-ES": "mpeg4",
          "MP2T": "mpegts", "VP8": "vp8", "VP9": "vp9", "AV1": "av1"}
STATIC_PAYLOADS = {26: "mjpeg", 32: "mpeg2", 33: "mpegts", 34: "h263"}


class SdpError(ValueError):
    pass


@dataclass(frozen=True)
class VideoInfo:
    """The first video medium of an SDP. width/height 0: not told by the SDP."""

    codec: str  # h264, h265, mjpeg, ... or the encoding name in lower case
    payload: int
    width: int = 0
    height: int = 0
    size_source: str = ""  # "attribute", "sps" or "" (unknown)
    profile: str = ""  # e.g. "high", "main"
    control: str = ""


def parse(sdp: str) -> VideoInfo | None:
    """The first `m=video` medium, or None when the SDP has no video. Raises SdpError on text
    that is not an SDP at all."""
    lines = [line.strip() for line in sdp.replace("\r", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("not an SDP description (no 'v=' line first)")
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
    for block in media:
        fields = block[0][2:].split()
        if len(fields) >= 4 and fields[0] == "video":
            return _video(fields, block[1:])
    return None


def _video(fields: list[str], attributes: list[str]) -> VideoInfo:
    try:
        payload = int(fields[3])
    except ValueError as exc:
        raise SdpError(f"bad payload type in m=video: {fields[3]!r}") from exc
    attrs: dict[str, list[str]] = {}
    for line in attributes:
        if line.startswith("a="):
            key, _, value = line[2:].partition(":")
            attrs.setdefault(key.strip().lower(), []).append(value.strip())

    def for_payload(name: str) -> str | None:
        for value in attrs.get(name, []):
            pt, _, rest = value.partition(" ")
            if pt.strip() == str(payload):
                return rest.strip()
        return None

    rtpmap = for_payload("rtpmap")
    if rtpmap:
        encoding = rtpmap.split("/")[0].strip().upper()
        codec = CODECS.get(encoding, encoding.lower())
    else:
        codec = STATIC_PAYLOADS.get(payload, f"pt{payload}")
    control = (attrs.get("control") or [""])[0]
    width, height = _size_attribute(attrs, for_payload)
    profile = ""
    source = "attribute" if width else ""
    fmtp = _fmtp(for_payload("fmtp") or "")
    sps = None
    try:
        if codec == "h264" and fmtp.get("sprop-parameter-sets"):
            sps = h264_sps(_b64(fmtp["sprop-parameter-sets"].split(",")[0]))
        elif codec == "h265" and fmtp.get("sprop-sps"):
            sps = h265_sps(_b64(fmtp["sprop-sps"].split(",")[0]))
    except (SdpError, IndexError, ValueError):
        sps = None  # a bad SPS only loses the size; the decoder will tell
    if sps is not None:
        profile = sps[2]
        if not width:
            width, height, source = sps[0], sps[1], "sps"
    return VideoInfo(codec, payload, width, height, source, profile, control)


def _size_attribute(attrs: dict[str, list[str]], for_payload) -> tuple[int, int]:
    framesize = for_payload("framesize")
    if framesize:
        match = re.match(r"(\d+)\s*-\s*(\d+)", framesize)
        if match:
            return int(match[1]), int(match[2])
    for value in attrs.get("x-dimensions", []):
        match = re.match(r"(\d+)\s*,\s*(\d+)", value)
        if match:
            return int(match[1]), int(match[2])
    for value in attrs.get("cliprect", []):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            top, left, bottom, right = map(int, parts)
            if right > left and bottom > top:
                return right - left, bottom - top
    return 0, 0


def _fmtp(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _b64(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise SdpError("bad base64 in parameter sets") from exc


class _Bits:
    """Big-endian bit reader over an RBSP (emulation-prevention bytes removed)."""

    def __init__(self, nal: bytes):
        self.data = re.sub(b"\x00\x00\x03", b"\x00\x00", nal)
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise SdpError("parameter set ends too early")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise SdpError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


H264_PROFILES = {66: "baseline", 77: "main", 88: "extended", 100: "high", 110: "high10",
                 122: "high422", 244: "high444", 44: "cavlc444"}


def h264_sps(nal: bytes) -> tuple[int, int, str]:
    """(width, height, profile) of an H.264 sequence parameter set NAL unit."""
    bits = _Bits(nal)
    if bits.u(8) & 0x1F != 7:
        raise SdpError("not an H.264 SPS")
    profile_idc = bits.u(8)
    constraints = bits.u(8)
    bits.u(8)  # level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = 0
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if chroma_format_idc == 0 or separate_planes:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            sub_w = 1 if chroma_format_idc == 3 else 2
            sub_h = 2 if chroma_format_idc == 1 else 1
            crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    profile = H264_PROFILES.get(profile_idc, str(profile_idc))
    if profile_idc == 66 and constraints & 0x40:
        profile = "constrained-baseline"
    if width <= 0 or height <= 0:
        raise SdpError("SPS gives no picture size")
    return width, height, profile


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


H265_PROFILES = {1: "main", 2: "main10", 3: "main-still-picture", 4: "rext"}


def h265_sps(nal: bytes) -> tuple[int, int, str]:
    """(width, height, profile) of an H.265 sequence parameter set NAL unit."""
    bits = _Bits(nal)
    header = bits.u(16)
    if (header >> 9) & 0x3F != 33:
        raise SdpError("not an H.265 SPS")
    bits.u(4)  # sps_video_parameter_set_id
    sub_layers = bits.u(3)  # sps_max_sub_layers_minus1
    bits.u(1)  # sps_temporal_id_nesting_flag
    bits.u(2)  # general_profile_space
    bits.u(1)  # general_tier_flag
    profile_idc = bits.u(5)
    bits.u(32)  # general_profile_compatibility_flags
    bits.u(48)  # progressive/interlaced/non-packed/frame-only flags and 44 reserved bits
    bits.u(8)  # general_level_idc
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        for _ in range(sub_layers, 8):
            bits.u(2)
    for profile_present, level_present in present:
        if profile_present:
            bits.u(88)
        if level_present:
            bits.u(8)
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc == 3:
        bits.u(1)  # separate_colour_plane_flag
    width = bits.ue()
    height = bits.ue()
    if bits.u(1):  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_w = 2 if chroma_format_idc in (1, 2) else 1
        sub_h = 2 if chroma_format_idc == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if width <= 0 or height <= 0:
        raise SdpError("SPS gives no picture size")
    return width, height, H265_PROFILES.get(profile_idc, str(profile_idc))
