"""The ``video_thumbnails`` pipeline: a poster frame in the image-thumbnail sizes and formats, and a
storyboard sprite sheet with its WebVTT map, from the same ffmpeg decode as ``transcode``.

Its :class:`ThumbnailBranch` takes one copy of the decoded video for the poster candidates and one for
the storyboard tiles (BMP frames in the scratch folder).  Alone and without the storyboard it needs a
few frames only, so ffmpeg seeks to the poster time instead of decoding the whole source.  Its finishing
step picks the poster (:mod:`pipelines.builtin.av.posters`), renders its sizes like image thumbnails, and
assembles the sprite sheet and the WebVTT map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from config.errors import BadInputError
from config.settings import Settings
from pipelines.builtin.av import group, posters
from pipelines.builtin.av import plan as avplan
from pipelines.builtin.av.group import VIDEO_INPUTS, Branch, Decode, FfmpegPipeline, Seek
from pipelines.media.geometry import fit
from pipelines.media.renditions import OUTPUT_TYPES, render_image
from pipelines.spec import Job, PlannedOutput, SourceInfo
from pipelines.tools import ffmpeg as ff

NAME = "video_thumbnails"


class VideoThumbnailPipeline(FfmpegPipeline):
    """Poster thumbnails (not a black frame) and a scrub-preview storyboard."""

    name: ClassVar[str] = NAME
    version: ClassVar[str] = "2"  # 2: manifests carry meta.thumbhash
    description: ClassVar[str] = "ffmpeg: poster frame in the thumbnail sizes, sprite sheet + WebVTT"
    warm_modules: ClassVar[tuple[str, ...]] = ("pipelines.tools.probe", "av", "pipelines.media.imaging")

    inputs: ClassVar[dict[str, str]] = VIDEO_INPUTS
    settings_section: ClassVar[str] = "transcode"
    stream_types: ClassVar[frozenset[str]] = frozenset({"video"})  # the audio is not used

    def settings_fingerprint(self, settings: Settings) -> Any:
        t = settings.transcode
        keys = {"poster_fraction", "poster_seconds", "poster_candidates", "max_output_seconds"}
        keys |= {k for k in type(t).model_fields if k.startswith("sprite")}
        return {
            "thumbnails": settings.thumbnails.model_dump(mode="json"),
            "transcode": {k: getattr(t, k) for k in sorted(keys)},
            "max_image_pixels": settings.limits.max_image_pixels,
        }

    def plan(self, source: SourceInfo, settings: Settings) -> list[PlannedOutput]:
        th, t = settings.thumbnails, settings.transcode
        out = [
            PlannedOutput(size, OUTPUT_TYPES[fmt][0], OUTPUT_TYPES[fmt][1])
            for size in th.sizes
            for fmt in th.formats
        ]
        if t.sprite:
            out += [
                PlannedOutput("sprite", "jpg", "image/jpeg"),
                PlannedOutput("storyboard", "vtt", "text/vtt"),
            ]
        return out

    def decodes_whole_source(self, settings: Settings) -> bool:
        return settings.transcode.sprite  # the storyboard needs the whole video; a poster a few frames

    def branch(self, job: Job, decode: Decode) -> ThumbnailBranch | None:
        t, info, v = job.settings.transcode, decode.info, decode.info.video
        if v is None:
            return None  # an audio-only file: no picture to take
        at = avplan.poster_time(info.duration, t)
        if t.max_output_seconds is not None:
            at = min(at, t.max_output_seconds * 0.999)
        count = t.poster_candidates
        if info.duration is not None:  # candidates 1 s apart, all inside the video
            count = max(1, min(count, 1 + math.floor(max(0.0, info.duration - at - 0.05))))
        folder = job.scratch_dir / "poster"
        folder.mkdir(exist_ok=True)
        if not decode.whole:  # rotation unknown here: full displayed size, Pillow fits it into the boxes
            return ThumbnailBranch(
                decode, ff.PosterOut(0.0, count, None, None, folder), seek_to=Seek(at, count)
            )
        boxes = job.settings.thumbnails.sizes.values()
        w, h = max((fit((v.display_width, v.display_height), b) for b in boxes), key=lambda s: s[0] * s[1])
        b = ThumbnailBranch(decode, ff.PosterOut(at, count, w, h, folder, first_frame=True))
        if t.sprite:
            geo = avplan.sprite_geometry(v, avplan.output_seconds(info.duration, t.max_output_seconds), t)
            tiles = job.scratch_dir / "tiles"
            tiles.mkdir(exist_ok=True)
            b.geometry = geo
            b.sprite = ff.SpriteOut(geo.interval, geo.tile_width, geo.tile_height, geo.tiles, tiles)
        return b


@dataclass
class ThumbnailBranch(Branch):
    """Poster candidates and storyboard tiles, each from its own copy of the decoded video."""

    decode: Decode
    poster: ff.PosterOut
    sprite: ff.SpriteOut | None = None
    geometry: avplan.SpriteGeometry | None = None  # of the sheet, planned
    seek_to: Seek | None = None  # poster only, alone: ffmpeg seeks instead of decoding everything

    @property
    def video_taps(self) -> int:
        return 1 + (self.sprite is not None)

    @property
    def seek(self) -> Seek | None:
        return self.seek_to

    def outputs(
        self, video: Sequence[ff.Stream], audio: ff.Stream | None, opts: ff.OutputOptions
    ) -> list[ff.Output]:
        outputs = [ff.poster_frames(video[0], self.poster, opts)]
        if self.sprite is not None:
            outputs.append(ff.storyboard_tiles(video[1], self.sprite, opts))
        return outputs

    def finish(self, job: Job, result: ff.RunResult) -> None:
        self._write_posters(job)
        if self.sprite is not None and self.geometry is not None:
            self._write_storyboard(job, self.sprite, self.geometry)

    def _write_posters(self, job: Job) -> None:
        p = self.poster
        frames = sorted(p.folder.glob("poster*.bmp"))
        times = p.times(self.seek_to.at if self.seek_to else None)
        first_frame = p.first_frame
        if not frames:  # seeking went past the real end of the video: a third ffmpeg run, first frame
            first = ff.PosterOut(0.0, 1, p.width, p.height, p.folder)
            t = job.settings.transcode
            args = group.command(self.decode, [replace(self, poster=first, sprite=None, seek_to=None)])
            margin = t.deadline_margin_seconds
            ff.run(args, deadline=job.deadline, margin=margin, io=job.io, local=job.scratch_dir)
            frames, times, first_frame = sorted(p.folder.glob("poster*.bmp")), [0.0], False
            if not frames:
                raise BadInputError("no video frame could be decoded for the poster")
        order = list(range(len(frames)))
        if first_frame:  # the first frame is only the last resort
            order = order[1:] + order[:1]
        data, index = posters.pick([frames[i].read_bytes() for i in order])
        at = times[order[index]]
        rendered = render_image(data, job.settings)
        placeholder = {"thumbhash": rendered.thumbhash} if rendered.thumbhash else {}
        for (size, fmt), (blob, (w, h)) in rendered.items():
            ext = OUTPUT_TYPES[fmt][0]
            job.write_output(NAME, size, blob, ext=ext, width=w, height=h, time=round(at, 3), **placeholder)

    def _write_storyboard(self, job: Job, sprite: ff.SpriteOut, geo: avplan.SpriteGeometry) -> None:
        """The tiles ffmpeg wrote, in one sheet, and a WebVTT file mapping each interval to its tile."""
        t = job.settings.transcode
        files = sorted(sprite.folder.glob("tile*.bmp"))[: geo.tiles]
        if not files:
            raise BadInputError("no video frame could be decoded for the storyboard")
        blob, geo, (w, h) = posters.sprite_sheet(files, geo, quality=t.sprite_jpeg_quality)
        job.write_output(NAME, "sprite", blob, ext="jpg", width=w, height=h, tiles=geo.tiles)
        duration = avplan.output_seconds(self.decode.info.duration, t.max_output_seconds)
        if duration is None:  # the container does not say: the last tile's interval ends the map
            duration = geo.tiles * geo.interval
        vtt_rel = job.output_relpath(NAME, "storyboard", ext="vtt")
        sprite_url = job.output_url(NAME, "sprite", ext="jpg", referrer=vtt_rel)
        text = avplan.storyboard_vtt(geo, duration, sprite_url)
        job.write_output(NAME, "storyboard", text.encode(), ext="vtt", interval=geo.interval, tiles=geo.tiles)
