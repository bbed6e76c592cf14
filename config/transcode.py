"""Settings of the ffmpeg pipelines (``transcode``, ``video_thumbnails``).

TOML example::

    [transcode]
    preset = "veryfast"
    hls = true
    audio_outputs = ["aac", "opus", "mp3"]
    [[transcode.ladder]]
    height = 720
    max_kbps = 3000

The poster frames of ``video_thumbnails`` use the sizes and formats of ``[thumbnails]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.base import Section

# Demuxers that read other files or URLs named inside the source: never used for an upload unless
# ``allow_playlist_demuxers`` is set (and even then only the file protocol is allowed).
PLAYLIST_DEMUXERS = ("hls", "concat", "dash", "image2", "imagepipe", "tee", "ffmetadata", "mpl2", "lavfi")

# Demuxers tried on sources (ffmpeg short names).  Containers and raw streams that real uploads use.
DEFAULT_INPUT_FORMATS = [
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2
    "matroska",  # matroska,webm
    "mpegts",
    "mpegtsraw",
    "mpeg",  # MPEG-PS / VOB
    "mpegvideo",  # MPEG-1/2 video elementary stream (.m2v, some .mpg)
    "avi",
    "flv",
    "asf",
    "mxf",
    "ogg",
    "mp3",
    "aac",
    "flac",
    "wav",
    "w64",
    "aiff",
    "caf",
    "amr",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "ape",
    "wv",
    "h264",
    "hevc",
    "m4v",
    "ivf",
]


class Rung(BaseModel):
    """One rung of the video ladder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    height: int = Field(ge=16, le=4320, description="Short side of the frame in pixels (720 = 720p).")
    max_kbps: int = Field(ge=50, le=100_000, description="Peak video bitrate cap (CRF otherwise).")

    @property
    def name(self) -> str:
        return f"{self.height}p"


def _default_ladder() -> list[Rung]:
    return [
        Rung(height=1080, max_kbps=6000),
        Rung(height=720, max_kbps=3500),
        Rung(height=480, max_kbps=1600),
        Rung(height=360, max_kbps=900),
    ]


AudioOutput = Literal["aac", "opus", "mp3"]
AUDIO_EXT = {"aac": "m4a", "mp3": "mp3"}  # opus: opus_container


class TranscodeSettings(Section):
    """ffmpeg: where it is, what it makes, what it refuses."""

    ffmpeg_binary: str | None = Field(
        default=None,
        description="ffmpeg to use; default: PATH (if its file protocol has pkt_size), then the one "
        "shipped by imageio-ffmpeg.",
    )
    # -- video ladder ---------------------------------------------------------------------------
    ladder: list[Rung] = Field(
        default_factory=_default_ladder,
        description="H.264 renditions; rungs above the source's short side are dropped (never upscaled); "
        "the smallest rung is always made, at the source size if that is smaller.",
    )
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = Field(default="veryfast", description="x264 preset.")
    crf: int = Field(default=23, ge=0, le=51, description="x264 constant rate factor.")
    profile: Literal["baseline", "main", "high"] = Field(default="high", description="H.264 profile.")
    gop_seconds: float = Field(
        default=2.0, gt=0, le=20, description="Keyframe interval (also the HLS segment alignment)."
    )
    max_fps: float = Field(default=60.0, gt=0, le=240, description="Frame rate cap for renditions.")
    video_audio_kbps: int = Field(default=128, ge=16, le=512, description="AAC bitrate in renditions.")
    # -- HLS ------------------------------------------------------------------------------------
    hls: bool = Field(
        default=False,
        description="Also write HLS: per rung an fMP4 file (byte ranges) and a media playlist, plus a "
        "master playlist.",
    )
    hls_segment_seconds: float = Field(default=6.0, gt=0, le=60, description="HLS target segment length.")
    # -- audio ----------------------------------------------------------------------------------
    audio_outputs: list[AudioOutput] = Field(
        default=["aac", "opus"], description="Audio files for audio sources: aac (.m4a), opus, mp3."
    )
    opus_container: Literal["webm", "ogg"] = Field(default="webm", description="Container for Opus.")
    aac_kbps: int = Field(default=160, ge=16, le=512, description="AAC bitrate of audio outputs.")
    opus_kbps: int = Field(default=96, ge=8, le=512, description="Opus bitrate.")
    mp3_kbps: int = Field(default=192, ge=32, le=320, description="MP3 bitrate.")
    loudnorm: bool = Field(
        default=False, description="Also write an EBU R128 loudness-normalised AAC (variant 'loudnorm')."
    )
    loudnorm_lufs: float = Field(default=-23.0, ge=-70, le=-5, description="Integrated loudness target.")
    audio_from_video: bool = Field(
        default=False, description="Also write the audio outputs for video sources."
    )
    # -- video thumbnails -----------------------------------------------------------------------
    poster_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Poster time as a fraction of the duration."
    )
    poster_seconds: float | None = Field(
        default=None, ge=0, description="Poster time in seconds (overrides poster_fraction)."
    )
    poster_candidates: int = Field(
        default=3, ge=1, le=10, description="Frames tried, 1 s apart, until one is not (nearly) black."
    )
    sprite: bool = Field(default=True, description="Write a storyboard sprite sheet and its WebVTT.")
    sprite_interval_seconds: float = Field(
        default=10.0, gt=0, description="One tile every N seconds (widened to fit sprite_max_tiles)."
    )
    sprite_tile_width: int = Field(default=160, ge=16, le=1920, description="Tile width in pixels.")
    sprite_columns: int = Field(default=10, ge=1, le=100, description="Tiles per row.")
    sprite_max_tiles: int = Field(default=100, ge=1, le=10_000, description="Tiles in the sheet at most.")
    sprite_jpeg_quality: int = Field(default=75, ge=1, le=95, description="JPEG quality of the sheet.")
    # -- HDR sources (phone video: HLG, PQ) -------------------------------------------------------
    hdr_to_sdr: bool = Field(
        default=True,
        description="Tone-map HDR sources (PQ/HDR10, HLG) to SDR BT.709 for the H.264 ladder, posters and "
        "the storyboard, in the same decode. Off: HDR pixels are scaled as if SDR (washed out).",
    )
    hdr_reference_white_nits: float = Field(
        default=203.0, ge=80, le=1000, description="HDR level shown as SDR white (BT.2408: 203 cd/m2)."
    )
    hdr_peak_nits: float = Field(
        default=1000.0,
        ge=100,
        le=10000,
        description="Peak assumed for a PQ source without MaxCLL/mastering metadata (phones master "
        "at about 1,000 cd/m2).",
    )
    hdr_rung: bool = Field(
        default=False,
        description="Also write an HDR rendition (variant 'hdr'): HEVC Main 10 at the top rung's size with "
        "the source's HDR tags, for players that show HDR. Only for HDR sources; not in HLS.",
    )
    hdr_crf: int = Field(default=24, ge=0, le=51, description="x265 CRF of the HDR rendition.")
    # -- limits and safety ----------------------------------------------------------------------
    max_duration_seconds: float = Field(
        default=4 * 3600, gt=0, description="Longer sources fail cleanly (a per-file error)."
    )
    max_pixels: int = Field(default=8192 * 4320, ge=1, description="Larger video frames fail cleanly.")
    max_streams: int = Field(default=32, ge=1, description="Sources with more streams fail cleanly.")
    max_output_seconds: float | None = Field(
        default=None, gt=0, description="Process only the first N seconds of each source."
    )
    allow_partial: bool = Field(
        default=False,
        description="Accept a source that decodes to clearly less than its declared duration "
        "(truncated upload); by default that is a per-file failure.",
    )
    input_formats: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INPUT_FORMATS),
        description="Demuxers (ffmpeg short names) allowed for sources.",
    )
    allow_playlist_demuxers: bool = Field(
        default=False,
        description="DANGEROUS for uploads: allow demuxers that open files named inside the source "
        f"({', '.join(PLAYLIST_DEMUXERS)}).",
    )
    probe_bytes: int = Field(
        default=8 << 20, ge=1 << 20, description="Bytes the probe may analyse (ffmpeg probesize)."
    )
    local_copy_max_bytes: int = Field(
        default=64 << 20,
        ge=0,
        description="Sources up to this size are read once (1 MiB reads) into the job's local scratch "
        "folder and probed and decoded from there, so the probe costs no second read on the mount; "
        "larger ones are read by ffmpeg straight from the mount. 0 = never.",
    )
    deadline_margin_seconds: float = Field(
        default=1.5, ge=0, description="ffmpeg is stopped this long before the job's deadline."
    )
    threads: int = Field(default=0, ge=0, le=64, description="ffmpeg threads per encoder; 0 = auto.")

    @field_validator("ladder")
    @classmethod
    def _check_ladder(cls, v: list[Rung]) -> list[Rung]:
        heights = [r.height for r in v]
        if len(set(heights)) != len(heights):
            raise ValueError("ladder heights must be distinct")
        return sorted(v, key=lambda r: -r.height)

    @field_validator("audio_outputs")
    @classmethod
    def _check_audio(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("audio_outputs must be distinct")
        return v

    @field_validator("input_formats")
    @classmethod
    def _check_formats(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"input format {name!r} is not an ffmpeg demuxer name")
        return v

    def allowed_demuxers(self) -> list[str]:
        """The demuxer whitelist for sources (playlist demuxers removed unless allowed)."""
        names = [n for n in self.input_formats if self.allow_playlist_demuxers or n not in PLAYLIST_DEMUXERS]
        if self.allow_playlist_demuxers:
            names += [n for n in ("hls", "concat") if n not in names]
        return names

    def audio_ext(self, kind: str) -> str:
        return self.opus_container if kind == "opus" else AUDIO_EXT[kind]

    def rendition_variants(self) -> list[tuple[str, str]]:
        out = [(r.name, "mp4") for r in self.ladder]
        if self.hdr_rung:
            out.append(("hdr", "mp4"))
        if self.hls:
            out += [(f"hls-{r.name}", "m3u8") for r in self.ladder]
            out += [(f"hls-{r.name}", "m4s") for r in self.ladder]
            out.append(("hls", "m3u8"))
        return out

    def audio_variants(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = [(kind, self.audio_ext(kind)) for kind in self.audio_outputs]
        if self.loudnorm:
            out.append(("loudnorm", "m4a"))
        return out
