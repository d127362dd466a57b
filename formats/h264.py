"""H.264 parameter sets as plain data: the displayed picture size an SPS declares.

One reader for the two places that need it: the fMP4 muxer's sample entry (:mod:`formats.cmaf`) and
the WHIP converter's metadata (``ingest.whip.convert``). Pure code: bytes in, numbers out.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BitReader", "H264Error", "sps_size"]

# profile_idc values whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1).
_HIGH_PROFILES: Final = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


class H264Error(ValueError):
    """A parameter set we cannot read."""


class BitReader:
    """MSB-first bit reader with H.264's Exp-Golomb codes; reading past the end raises H264Error.
    (``formats.cmaf`` reads AAC's AudioSpecificConfig with its plain ``bits``.)"""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise H264Error("truncated parameter set")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("invalid Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    """NAL payload without emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def sps_size(sps: bytes) -> tuple[int, int]:
    """Displayed width and height from an SPS NAL unit, header byte included (H.264 7.3.2.1.1,
    cropping 7.4.2.1.1); :class:`H264Error` if it cannot be read or crops the whole picture away."""
    r = BitReader(_rbsp(sps[1:]))
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format == 3:
            separate_planes = r.bits(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if r.bits(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.bits(1):
                    last, following = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if following:
                            following = (last + r.se() + 256) % 256
                        last = following or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bits(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bits(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bits(1)
    if not frame_mbs_only:
        r.bits(1)  # mb_adaptive_frame_field_flag
    r.bits(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.bits(1):  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        if chroma_format == 0 or separate_planes:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x = 1 if chroma_format == 3 else 2
            unit_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise H264Error("SPS cropping leaves no picture")
    return width, height
