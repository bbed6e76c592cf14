"""Generate the small, deterministic sample media files used by tests and demos.

Run from the repo root: ``.venv/bin/python sample_media/make_samples.py [--out DIR]``.
Randomness is seeded and timestamps are fixed, so reruns with the same Pillow/fpdf2/ffmpeg
versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import random
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import imageio_ffmpeg
from fpdf import FPDF
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, ImageFont

SEED = 20240517
FIXED_DATE = datetime(2024, 5, 17, 14, 32, 10, tzinfo=UTC)
EXIF_DATE = FIXED_DATE.strftime("%Y:%m:%d %H:%M:%S")

# Stored (pre-orientation) size of photo.jpg and the red marker drawn in its stored top-left corner.
PHOTO_SIZE = (1600, 1200)
MARKER_BOX = (0, 0, 160, 160)
MARKER_RGB = (255, 0, 0)

PAGE_LINES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "On 12 March 2024, the warehouse received 3,750 boxes of paper.",
    "Each box weighed about 18.5 kg, so the total was close to 69 tonnes.",
    "Please send the signed invoice (No. 4471-B) before Friday at 5 pm.",
    "If you have any questions, call our office on 020 7946 0958.",
    "The meeting was moved from Room 204 to the main hall upstairs.",
    "Our team finished 97% of the planned work in just 11 days.",
    "Thank you for your patience; the new schedule starts on Monday.",
    "Kind regards, and we hope to see you again next year.",
    "Reference code: ZX-2048, batch 7 of 9, checked by A. Morgan.",
]

SCAN_LINES = [
    "Minutes of the Garden Club meeting, held on 4 June 2023.",
    "Present were 14 members and 2 guests from the town council.",
    "The treasurer reported a balance of 1,285 pounds and 40 pence.",
    "New benches will be installed along the east path by July 31.",
    "Mrs. Patel offered to donate 25 rose bushes for the front beds.",
    "A vote was held: 12 in favour, 3 against, and 1 abstention.",
    "The autumn fair will take place on Saturday, 16 September.",
    "Volunteers should arrive at 8:30 am to help set up the tents.",
    "The next meeting is planned for the first Tuesday in August.",
    "The chair closed the meeting at 9:15 pm with thanks to all.",
]

DOC_TITLE = "Quarterly Operations Report"
DOC_PAGE1 = [
    "This report summarises the work completed by the operations team",
    "during the second quarter of 2024. In total, 1,842 orders were",
    "shipped on time, an increase of 7.5% compared with the first quarter.",
    "Customer complaints fell from 63 to 41, mostly thanks to the new",
    "packing process introduced in April.",
]
DOC_PAGE2 = [
    "Looking ahead, the team plans to open a second loading bay in",
    "September and to hire 4 additional drivers. The budget for these",
    "changes is 120,000 dollars, which was approved by the board on",
    "June 28. Progress will be reviewed again at the end of the year.",
]


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg binary with deterministic output flags, raising on failure."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def srgb_icc() -> bytes:
    """Return an sRGB ICC profile with its creation date pinned (LittleCMS stamps the current time)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    d = FIXED_DATE
    stamp = b"".join(v.to_bytes(2, "big") for v in (d.year, d.month, d.day, d.hour, d.minute, d.second))
    data[24:36] = stamp  # ICC header dateTimeNumber; the profile ID (bytes 84..99) is left as zeros.
    return bytes(data)


def noise_image(rng: random.Random, size: tuple[int, int], amplitude: int) -> Image.Image:
    """Seeded uniform noise in 0..2*amplitude as an 'L' image (meant for ImageChops.add with offset)."""
    w, h = size
    raw = Image.frombytes("L", size, rng.randbytes(w * h))
    return raw.point(lambda v: v * (2 * amplitude + 1) // 256)


def make_photo(out: Path, rng: random.Random) -> None:
    """Write photo.jpg: a 1600x1200 stored JPEG with EXIF Orientation=6, DateTime and an sRGB ICC profile.

    The scene is drawn upright in portrait (1200x1600) and stored rotated 90 degrees counter-clockwise,
    like a camera held sideways. The red square is in the *stored* top-left corner. Orientation 6
    means "rotate 90 degrees clockwise for display", so a correct viewer (``ImageOps.exif_transpose``)
    shows an upright 1200x1600 portrait with the red marker in the *displayed top-right* corner.
    """
    h, w = PHOTO_SIZE  # display (portrait) width and height
    # Sky-to-ground vertical gradient built from Pillow's 256x256 linear gradient.
    grad = Image.linear_gradient("L").resize((w, h), Image.Resampling.BICUBIC)
    sky = Image.new("RGB", (w, h), (70, 130, 200))
    ground = Image.new("RGB", (w, h), (205, 170, 110))
    img = Image.composite(ground, sky, grad)
    # Shapes: clouds, sun, hills and a house, slightly blurred afterwards.
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y, r = rng.randrange(0, w), rng.randrange(60, 450), rng.randrange(30, 70)
        draw.ellipse((x - 2 * r, y - r, x + 2 * r, y + r), fill=(235, 240, 245))
    draw.ellipse((820, 180, 1040, 400), fill=(250, 215, 90))
    draw.ellipse((-400, 900, 800, 1800), fill=(70, 130, 60))
    draw.ellipse((400, 1000, 1600, 1900), fill=(95, 150, 70))
    draw.rectangle((250, 800, 570, 1060), fill=(180, 60, 50))
    draw.polygon([(220, 810), (410, 650), (600, 810)], fill=(90, 50, 40))
    draw.rectangle((370, 920, 450, 1060), fill=(60, 40, 30))
    img = img.filter(ImageFilter.GaussianBlur(3)).transpose(Image.Transpose.ROTATE_90)  # -> stored 1600x1200
    # Mild sensor-like noise (+-5 per channel, independent per channel).
    noise = Image.merge("RGB", [noise_image(rng, img.size, 5) for _ in range(3)])
    img = ImageChops.add(img, noise, offset=-5)
    # Orientation marker, drawn last (in stored coordinates) so it stays pure red.
    ImageDraw.Draw(img).rectangle(MARKER_BOX, fill=MARKER_RGB)

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x0132] = EXIF_DATE  # DateTime
    exif[0x010F] = "MediaWorker"  # Make
    exif[0x0110] = "SampleCam 1"  # Model
    exif.get_ifd(0x8769)[0x9003] = EXIF_DATE  # DateTimeOriginal
    img.save(
        out / "photo.jpg", "JPEG", quality=85, optimize=True, exif=exif.tobytes(), icc_profile=srgb_icc()
    )


def make_logo(out: Path) -> None:
    """Write logo.png: 400x300 RGBA, transparent background, opaque badge, soft semi-transparent shadow."""
    size, ss = (400, 300), 4  # supersample for anti-aliased (partially transparent) edges
    big = (size[0] * ss, size[1] * ss)
    shadow = Image.new("L", big, 0)
    ImageDraw.Draw(shadow).rounded_rectangle((70 * ss, 70 * ss, 350 * ss, 250 * ss), 40 * ss, fill=110)
    shadow = shadow.resize(size, Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(8))
    logo = Image.new("RGBA", size, (0, 0, 0, 0))
    logo.paste((20, 20, 40, 255), (0, 0), shadow)  # shadow alpha is the blurred mask (0..110)

    badge = Image.new("RGBA", big, (0, 0, 0, 0))
    d = ImageDraw.Draw(badge)
    d.rounded_rectangle((50 * ss, 50 * ss, 330 * ss, 230 * ss), 40 * ss, fill=(230, 90, 30, 255))
    d.ellipse((90 * ss, 90 * ss, 190 * ss, 190 * ss), fill=(255, 255, 255, 255))
    d.ellipse((150 * ss, 90 * ss, 250 * ss, 190 * ss), fill=(30, 120, 220, 140))  # semi-transparent
    font = ImageFont.load_default(size=44 * ss)
    d.text((270 * ss, 140 * ss), "MW", font=font, fill=(255, 255, 255, 255), anchor="mm")
    logo.alpha_composite(badge.resize(size, Image.Resampling.LANCZOS))
    logo.save(out / "logo.png", optimize=True)


def render_text_page(
    lines: Sequence[str],
    size: tuple[int, int],
    font_size: int,
    margin: int,
    line_height: int,
    background: int,
) -> Image.Image:
    """Render lines of black text on a grayscale ('L') page."""
    img = Image.new("L", size, background)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, font=font, fill=0)
    return img


def write_text(path: Path, lines: Sequence[str]) -> None:
    """Write ground-truth text, one line per rendered line, with a trailing newline."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def make_page(out: Path) -> None:
    """Write page.png (2000x1400 'L', ~300 DPI-like text for OCR) and its ground truth page.txt."""
    img = render_text_page(
        PAGE_LINES, (2000, 1400), font_size=44, margin=150, line_height=100, background=255
    )
    img.save(out / "page.png", optimize=True)
    write_text(out / "page.txt", PAGE_LINES)


def make_scan(out: Path, rng: random.Random) -> None:
    """Write scan.pdf: one image-only Letter page at 200 DPI (off-white, faint noise), plus scan.txt."""
    img = render_text_page(SCAN_LINES, (1700, 2200), font_size=32, margin=170, line_height=64, background=244)
    img = ImageChops.add(img, noise_image(rng, img.size, 3), offset=-3)
    img.save(
        out / "scan.pdf",
        "PDF",
        resolution=200,
        quality=80,
        title="Scanned page",
        producer="media-worker make_samples",
        creationDate=FIXED_DATE.utctimetuple(),
        modDate=FIXED_DATE.utctimetuple(),
    )
    write_text(out / "scan.txt", SCAN_LINES)


def make_document(out: Path) -> None:
    """Write document.pdf: 2-page A4 born-digital PDF (Helvetica text layer), plus document.txt."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(DOC_TITLE)
    pdf.set_author("media-worker")
    pdf.set_creator("media-worker make_samples")
    pdf.set_auto_page_break(False)
    pages = [[DOC_TITLE, *DOC_PAGE1], DOC_PAGE2]
    for page_no, lines in enumerate(pages):
        pdf.add_page()
        for i, line in enumerate(lines):
            is_title = page_no == 0 and i == 0
            pdf.set_font("Helvetica", "B" if is_title else "", 20 if is_title else 12)
            pdf.cell(0, 14 if is_title else 7, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(out / "document.pdf"))
    text = "\f".join("\n".join(lines) + "\n" for lines in pages)
    (out / "document.txt").write_text(text, encoding="utf-8", newline="\n")


BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def make_clip(out: Path) -> None:
    """Write clip.mp4: 3 s 640x360 25 fps H.264 (yuv420p) + AAC stereo 48 kHz, moov atom first."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=3",
        "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000:duration=3",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "medium", "-crf", "30", "-pix_fmt", "yuv420p", "-g", "25",
        "-threads", "1",
        "-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "2",
        *BITEXACT, "-movflags", "+faststart", "-shortest", str(out / "clip.mp4"),
    )  # fmt: skip


def make_tone(out: Path) -> None:
    """Write tone.m4a: 3 s AAC mono 44.1 kHz, a 220 -> 880 Hz linear sine sweep."""
    sweep = "0.5*sin(2*PI*(220*t+(880-220)/(2*3)*t*t))"
    ffmpeg(
        "-f", "lavfi", "-i", f"aevalsrc={sweep}:s=44100:d=3",
        "-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1",
        *BITEXACT, "-movflags", "+faststart", str(out / "tone.m4a"),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Generate every sample file into --out (default: this script's directory)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    make_photo(out, rng)
    make_logo(out)
    make_page(out)
    make_scan(out, rng)
    make_document(out)
    make_clip(out)
    make_tone(out)
    for path in sorted(out.iterdir()):
        if path.is_file() and path.name not in {"make_samples.py", "README.md"}:
            print(f"{path.name:14} {path.stat().st_size:>9,} bytes")


if __name__ == "__main__":
    main()
