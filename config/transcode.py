"""Settings of the ffmpeg pipelines (``transcode``, ``video_thumbnails``)."""

from __future__ import annotations

from pydantic import Field

from config.base import Section


class TranscodeSettings(Section):
    """ffmpeg: where it is and what it makes."""

    ffmpeg_binary: str | None = Field(
        default=None, description="ffmpeg to use; default: PATH, then the one shipped by imageio-ffmpeg."
    )
