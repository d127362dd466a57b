"""formats.h264: the picture size an SPS declares, from SPS written bit by bit here (ffmpeg-made ones
are read in tests/formats/test_cmaf.py and tests/ingest/whip/test_convert.py), and its exact errors."""

from __future__ import annotations

import pytest

from formats.h264 import BitReader, H264Error, sps_size


def _ue(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def baseline_sps(width_mbs: int, height_mbs: int, crop: tuple[int, int, int, int] | None = None) -> bytes:
    """A Baseline-profile SPS (profile 66, 4:2:0, progressive) with optional frame cropping."""
    bits = f"{66:08b}" + "0" * 8 + f"{31:08b}"  # profile_idc, constraint flags, level_idc
    bits += _ue(0) + _ue(0) + _ue(2) + _ue(1) + "0"  # sps id, log2_max_frame_num-4, poc type 2, refs, gaps
    bits += _ue(width_mbs - 1) + _ue(height_mbs - 1) + "1" + "1"  # frame_mbs_only, direct_8x8_inference
    bits += "0" if crop is None else "1" + "".join(_ue(c) for c in crop)
    bits += "0"  # vui_parameters_present_flag
    bits += "1"  # rbsp_stop_one_bit
    bits += "0" * (-len(bits) % 8)
    return b"\x67" + int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize(("sps", "size"), [
    (baseline_sps(80, 45), (1280, 720)),
    (baseline_sps(120, 68, (0, 0, 0, 4)), (1920, 1080)),  # 4:2:0 crops in units of two lines
    (baseline_sps(40, 23, (0, 2, 0, 1)), (636, 366)),  # and of two columns
])
def test_displayed_size(sps: bytes, size: tuple[int, int]) -> None:
    assert sps_size(sps) == size


@pytest.mark.parametrize(("sps", "message"), [
    (baseline_sps(80, 45)[:3], "truncated parameter set"),
    (b"\x67\x42\x00\x1f" + bytes(5), "invalid Exp-Golomb code in SPS"),
    (baseline_sps(1, 1, (4, 4, 0, 0)), "SPS cropping leaves no picture"),
])
def test_unreadable_sps(sps: bytes, message: str) -> None:
    with pytest.raises(H264Error, match=f"^{message}$"):
        sps_size(sps)


def test_exp_golomb_codes() -> None:
    bits = "1" + "010" + "011" + "00100" + "00101" + "0000000"  # ue 0, ue 1, se -1, ue 3, se -2, padding
    r = BitReader(int(bits, 2).to_bytes(3, "big"))
    assert (r.ue(), r.ue(), r.se(), r.ue(), r.se()) == (0, 1, -1, 3, -2)
    with pytest.raises(H264Error, match="^truncated parameter set$"):
        r.bits(8)
