"""HEIC/HEIF photos (what iPhones save) through the thumbnails pipeline, decoded by pi-heif.

Test files are made with pillow-heif (its x265 encoder, GPL: a dev dependency only; the image ships the
decode-only pi-heif), plus the corpus's ``hopper.heif``.  Each output is decoded and measured: size,
orientation, the colour of a known patch, alpha."""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import pillow_heif
import pytest
from conftest import CORPUS, SAMPLES, cli_env, json_lines, run_cli
from ocr_helpers import cer, engine, text_of
from PIL import Image, ImageCms, ImageStat

from config.errors import BadInputError
from pipelines.media.imaging import open_image, render_thumbnails

RED, GREEN = (200, 40, 40), (40, 190, 60)
BOXES = {"thumb": (150, 150), "large": (1920, 1080)}


def heic(
    im: Image.Image, *more: Image.Image, exif_orientation: int | None = None, icc: bytes | None = None
) -> bytes:
    """Encode ``im`` (and ``more`` images after it) as HEIC, near-lossless."""
    heif = pillow_heif.from_pillow(im)
    for extra in more:
        heif.add_from_pillow(extra)
    params: dict[str, object] = {"quality": 95}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        params["exif"] = exif.tobytes()
    if icc is not None:
        heif[0].info["icc_profile"] = icc
    buf = io.BytesIO()
    heif.save(buf, **params)
    return buf.getvalue()


def patched(size: tuple[int, int] = (600, 400)) -> Image.Image:
    """RED, with a GREEN patch in the top-left quarter."""
    im = Image.new("RGB", size, RED)
    im.paste(GREEN, (0, 0, size[0] // 2, size[1] // 2))
    return im


def mean(im: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(im.convert("RGB").crop(box)).mean)


def close(a: tuple[float, ...], b: tuple[float, ...], tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def render(data: bytes, **kw: object) -> dict[tuple[str, str], Image.Image]:
    out = render_thumbnails(data, boxes=BOXES, formats=["jpeg", "webp", "png"], max_pixels=100_000_000, **kw)  # type: ignore[arg-type]
    return {k: Image.open(io.BytesIO(blob)) for k, (blob, _) in out.items()}


def display_p3_icc() -> bytes:
    """A Display P3 ICC v2 profile (matrix/TRC): Apple's D50-adapted colorants, the sRGB transfer curve."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    curve = [round(65535 * (v / 1023 / 12.92 if v / 1023 <= 0.04045 else ((v / 1023 + 0.055) / 1.055) ** 2.4))
             for v in range(1024)]  # fmt: skip
    trc = b"curv\0\0\0\0" + struct.pack(">I", 1024) + struct.pack(">1024H", *curve)
    desc_text = b"Display P3 (test)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(desc_text)) + desc_text + b"\0" * 12 + b"\0" * 67
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.96420, 1.0, 0.82491)),
        (b"rXYZ", xyz(0.515102, 0.241196, -0.001053)),
        (b"gXYZ", xyz(0.291965, 0.692236, 0.041882)),
        (b"bXYZ", xyz(0.157153, 0.066569, 0.784073)),
        (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc),
        (b"cprt", b"text\0\0\0\0public domain\0"),
    ]  # fmt: skip
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        while (offset + len(body)) % 4:
            body += b"\0"
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acspAPPL" + b"\0" * 4 + b"\0" * 8 + b"\0" * 8 + b"\0" * 4
              + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


# -- real files ----------------------------------------------------------------------------------


def test_hopper_heif_from_the_corpus_matches_the_jpeg_of_the_same_picture() -> None:
    path = CORPUS / "images/hopper.heif"
    if not path.is_file():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    out = render(path.read_bytes())
    with Image.open(CORPUS / "images/hopper.jpg") as ref:
        ref_rgb = ref.convert("RGB")
    for (size, fmt), im in out.items():
        assert im.size == (128, 128), (size, fmt)  # its own size: never upscaled
        whole = (0, 0, 128, 128)
        assert close(mean(im, whole), mean(ref_rgb, whole), 4), (size, fmt, mean(im, whole))
        patch = (20, 20, 60, 60)
        assert close(mean(im, patch), mean(ref_rgb, patch), 8), (size, fmt)


def test_a_rotated_heic_comes_out_upright() -> None:
    """EXIF orientation 6 (rotate 90 CW), stored by libheif as an irot transform: portrait, the green patch
    (top-left as stored) top-right as displayed, applied once (not twice)."""
    data = heic(patched(), exif_orientation=6)
    for (size, fmt), im in render(data).items():
        w, h = im.size
        assert h > w and abs(w / h - 400 / 600) < 0.02, (size, fmt, im.size)
        assert close(mean(im, (w * 3 // 4 - 5, h // 8, w * 3 // 4 + 5, h // 8 + 10)), GREEN, 12), (size, fmt)
        assert close(mean(im, (w // 4 - 5, h // 8, w // 4 + 5, h // 8 + 10)), RED, 12), (size, fmt)


def test_display_p3_is_converted_to_srgb() -> None:
    p3 = display_p3_icc()
    colour = (180, 110, 60)  # inside both gamuts: the conversion shows as a shift, not clipping
    src = Image.new("RGB", (300, 200), colour)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(p3))
    reference = ImageCms.profileToProfile(src, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert reference is not None
    expected = reference.getpixel((0, 0))
    assert isinstance(expected, tuple)
    assert max(abs(a - b) for a, b in zip(expected, colour, strict=True)) >= 8  # a real shift to detect
    with Image.open(io.BytesIO(heic(src, icc=p3))) as check:  # the encoder embedded the profile
        assert check.format == "HEIF" and check.info.get("icc_profile") == p3
    for (size, fmt), im in render(heic(src, icc=p3)).items():
        got = mean(im, (10, 10, 140, 90))
        assert close(got, expected, 4), (size, fmt, got, expected)
        assert not im.info.get("icc_profile")  # pixels are sRGB now: no profile embedded


def test_alpha_is_kept_for_webp_and_png_and_flattened_for_jpeg() -> None:
    im = Image.new("RGBA", (400, 300), (*RED, 255))
    im.paste((0, 0, 0, 0), (0, 0, 200, 300))  # left half fully transparent
    out = render(heic(im))
    for size in BOXES:
        for fmt in ("webp", "png"):
            o = out[(size, fmt)]
            assert o.mode == "RGBA", (size, fmt)
            w, h = o.size
            alpha = o.getchannel("A")
            assert ImageStat.Stat(alpha.crop((0, 0, w // 2 - 4, h))).mean[0] < 8, (size, fmt)
            assert ImageStat.Stat(alpha.crop((w // 2 + 4, 0, w, h))).mean[0] > 247, (size, fmt)
        j = out[(size, "jpeg")]
        assert j.mode == "RGB" and close(mean(j, (2, 2, 20, 20)), (255, 255, 255), 6), size


def test_the_primary_image_of_a_burst_is_used() -> None:
    first, second = Image.new("RGB", (320, 240), RED), Image.new("RGB", (320, 240), GREEN)
    for im in render(heic(first, second)).values():
        assert close(mean(im, (0, 0, im.width, im.height)), RED, 10)


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    """The size comes from the container's header: a HEIC whose coded data is cut off is refused for its
    size (decoding it would fail differently)."""
    data = heic(patched((2000, 1000)))
    cut = data[: len(data) // 2]
    with pytest.raises(BadInputError, match=r"2000x1000 = 2 Mpx, over the limit of 1 Mpx"):
        open_image(cut, max_pixels=1_000_000)
    with pytest.raises(BadInputError):  # within the limit, the same file fails as it is decoded
        render_thumbnails(cut, boxes=BOXES, formats=["jpeg"], max_pixels=100_000_000)


# -- through the CLI, as uploaded ------------------------------------------------------------------


def test_heic_uploads_with_any_case_and_a_space_in_the_name(workspace: Path) -> None:
    (workspace / "DCIM").mkdir()
    (workspace / "DCIM/IMG 0001.HEIC").write_bytes(heic(patched(), exif_orientation=6))
    (workspace / "DCIM/IMG_0002.heif").write_bytes(heic(patched()))
    if (CORPUS / "images/hopper.heif").is_file():
        shutil.copy(CORPUS / "images/hopper.heif", workspace / "DCIM/hopper.heif")
    res = run_cli("run", "-w", str(workspace), "--json", "DCIM", env=cli_env())
    assert res.returncode == 0, res.stderr[-2000:]
    results = {r["source"]: r for r in json_lines(res.stdout)}
    for rel, portrait in (("DCIM/IMG 0001.HEIC", True), ("DCIM/IMG_0002.heif", False)):
        r = results[rel]
        assert r["status"] == "ok", r
        doc = json.loads((workspace / r["manifest"]).read_text())
        assert doc["pipelines"] == ["thumbnails"]
        for out in doc["outputs"]:
            with Image.open(workspace / out["path"]) as im:
                assert (im.height > im.width) == portrait, (rel, out["path"], im.size)
                assert im.format in ("JPEG", "WEBP")
    assert "pi-heif" in "".join(
        json.loads((workspace / results["DCIM/IMG_0002.heif"]["manifest"]).read_text())["tools"]
    )


def test_a_phone_photo_of_a_page_as_heic_is_ocrd(workspace: Path) -> None:
    with Image.open(SAMPLES / "page.png") as page:
        (workspace / "page.heic").write_bytes(heic(page.convert("RGB")))
    res = engine(workspace).process("page.heic", pipelines=["ocr"])
    assert res.status == "ok", res
    assert cer(text_of(workspace, res), (SAMPLES / "page.txt").read_text()) < 0.02


# -- a decoder's security limit ------------------------------------------------------------------


def _boxes(data: bytes) -> dict[bytes, bytes]:
    """The first box of each type among the ISOBMFF boxes in ``data`` (headers included)."""
    out, at = {}, 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        out.setdefault(kind, data[at : at + size])
        at += size
    return out


def _box(kind: bytes, payload: bytes, version: int | None = None, flags: int = 0) -> bytes:
    if version is not None:  # a full box
        payload = bytes([version]) + flags.to_bytes(3, "big") + payload
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def grid_heic(grid_size: tuple[int, int]) -> bytes:
    """A HEIF whose primary image is a 1x1 'grid' of a 64x48 HEVC tile: its header (ispe) says 64x48,
    its grid data says ``grid_size``.  libheif reads the grid only when decoding, and stops there at its
    security limit on image size (32768x32768) for a bigger one."""
    tile = heic(Image.new("RGB", (64, 48), RED))
    top = _boxes(tile)
    meta = _boxes(top[b"meta"][12:])
    hvcc = _boxes(_boxes(meta[b"iprp"][8:])[b"ipco"][8:])[b"hvcC"]
    hevc = top[b"mdat"][8:]
    grid = bytes([0, 1, 0, 0]) + struct.pack(">II", *grid_size)  # 32-bit sizes, rows = columns = 1
    infe = [
        _box(b"infe", struct.pack(">HH4sB", 1, 0, b"hvc1", 0), 2, flags=1),  # the tile: hidden
        _box(b"infe", struct.pack(">HH4sB", 2, 0, b"grid", 0), 2),
    ]
    ispe = _box(b"ispe", struct.pack(">II", 64, 48), 0)
    ipma = struct.pack(">IHBBB", 2, 1, 2, 0x81, 0x02) + struct.pack(">HBB", 2, 1, 0x02)
    iprp = _box(b"iprp", _box(b"ipco", hvcc + ispe) + _box(b"ipma", ipma, 0))

    def head(offset: int) -> bytes:
        items = struct.pack(">HHHII", 1, 0, 1, offset, len(hevc))
        items += struct.pack(">HHHII", 2, 0, 1, offset + len(hevc), len(grid))
        meta = _box(
            b"meta",
            _box(b"hdlr", b"\0" * 4 + b"pict" + b"\0" * 13, 0)
            + _box(b"pitm", struct.pack(">H", 2), 0)
            + _box(b"iloc", bytes([0x44, 0]) + struct.pack(">H", 2) + items, 0)
            + _box(b"iinf", struct.pack(">H", 2) + b"".join(infe), 0)
            + _box(b"iref", _box(b"dimg", struct.pack(">HHH", 2, 1, 1)), 0)
            + iprp,
            0,
        )
        return _box(b"ftyp", b"heic\0\0\0\0mif1heic") + meta

    start = len(head(0)) + 8  # the mdat payload follows the head and the mdat header
    return head(start) + _box(b"mdat", hevc + grid)


def test_a_decoders_security_limit_is_a_bad_input(workspace: Path) -> None:
    """libheif refuses to decode a grid of 40000x40000 (over its 32768x32768 security limit) that a
    64x48 header announced; pi-heif raises that as a bare RuntimeError: a clean bad_input, naming it."""
    data = grid_heic((40000, 40000))
    assert open_image(data, max_pixels=100_000_000).size == (64, 48)  # our pixel check sees the header
    with pytest.raises(BadInputError, match="Security limit exceeded: Image size 40000x40000"):
        render_thumbnails(data, boxes=BOXES, formats=["jpeg"], max_pixels=100_000_000)
    (workspace / "in").mkdir()
    (workspace / "in/grid.heic").write_bytes(data)
    for pipeline in ("thumbnails", "ocr"):
        res = engine(workspace).process("in/grid.heic", pipelines=[pipeline])
        assert res.status == "failed" and res.error_kind == "bad_input", res
        assert "Security limit exceeded" in str(res.error)
