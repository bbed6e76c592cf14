"""The seam of the ffmpeg pipelines: each contributes its own branch to ONE ffmpeg command.

Real probes, real branches, real command building (pipelines.builtin.av.group.command), no ffmpeg mocked: a
small job stands in for the engine's (settings, a scratch folder, output names), and the command is
read back.  The kernel's view of the same property (one ffmpeg process reads each source) is in
tests/test_transcode_strace.py.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from avtools import FAST
from conftest import SAMPLES

from config.settings import Settings, load_settings
from pipelines.builtin.av import group
from pipelines.builtin.av.group import Branch, Decode, FfmpegPipeline
from pipelines.builtin.av.transcode import TranscodeBranch
from pipelines.core.registry import load_registry
from pipelines.spec import SourceInfo
from pipelines.tools import ffmpeg as ff
from pipelines.tools.probe import probe


@dataclass
class PlanJob:
    """What a branch is built with: settings, a scratch folder, output names (under ``out/``)."""

    settings: Settings
    source: SourceInfo
    root: Path

    @property
    def scratch_dir(self) -> Path:
        return self.root / "scratch"

    def output_relpath(self, pipeline: str, variant: str, *, ext: str | None = None) -> str:
        return f"out/{pipeline}/{variant}.{ext}"

    def output_path(self, pipeline: str, variant: str, *, ext: str | None = None) -> Path:
        return self.root / self.output_relpath(pipeline, variant, ext=ext)

    def open_output(self, pipeline: str, variant: str, *, ext: str | None = None, **meta: Any) -> Any:
        raise AssertionError("no command is run here")


def built(tmp: Path, sample: str, names: list[str], **transcode: Any) -> tuple[list[str], list[Branch]]:
    """The ffmpeg command the group ``names`` runs for ``sample``, and its branches."""
    settings = load_settings(None, transcode={**FAST, **transcode})
    reg = load_registry()
    pipelines = [p for n in names if isinstance(p := reg.pipelines[n], FfmpegPipeline)]
    assert len(pipelines) == len(names)
    tmp.mkdir()
    (tmp / "scratch").mkdir()
    src = tmp / sample
    shutil.copy(SAMPLES / sample, src)
    job = PlanJob(settings, SourceInfo(sample, src.stat().st_size, 0), tmp)
    t = settings.transcode
    whole = any(p.decodes_whole_source(settings) for p in pipelines)
    info = probe(src, allowed_demuxers=t.allowed_demuxers(), probe_bytes=t.probe_bytes, rotation=whole)
    tool = ff.locate(t.ffmpeg_binary)
    decode = Decode(tool, src, info, whole, tuple(t.allowed_demuxers()), t.max_output_seconds, t.threads)
    branches = [b for p in pipelines if (b := p.branch(job, decode)) is not None]
    return group.command(decode, branches), branches


def inputs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "-i"]


def outputs(args: list[str], root: Path) -> set[str]:
    """Files the command writes, relative to ``root`` (scratch frames and staged outputs), and outputs
    it writes into a pipe for the worker (named by their placeholder ``pipe:<relpath>``)."""
    prefix = f"file:{root}/"
    found = set()
    for a in args[args.index("-i") + 2 :]:
        if a.startswith(prefix):
            found.add(a.removeprefix(prefix))
        elif m := re.fullmatch(r"pipe:<(.+)>", a):
            found.add(m[1])
    return found


def graph(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def chains(args: list[str]) -> list[str]:
    """The filters of the graph in order, labels stripped (what a branch hangs off the split)."""
    return re.findall(r"\]([a-z_]+)=", graph(args))


TRANSCODE_OUT = {"out/transcode/240p.mp4", "out/transcode/144p.mp4"}
THUMBS_OUT = {"scratch/poster/poster%02d.bmp", "scratch/tiles/tile%05d.bmp"}


def test_each_pipeline_alone_builds_only_its_own_branch(tmp_path: Path) -> None:
    tc, tc_branches = built(tmp_path / "tc", "clip.mp4", ["transcode"])
    vt, vt_branches = built(tmp_path / "vt", "clip.mp4", ["video_thumbnails"])
    assert len(tc_branches) == len(vt_branches) == 1
    # transcode: the ladder and nothing of the thumbnails (no frames, no select, no split of the source)
    assert outputs(tc, tmp_path / "tc") == TRANSCODE_OUT
    assert "libx264" in tc and "image2" not in tc and "bmp" not in tc
    assert "select" not in chains(tc) and graph(tc).startswith("[0:0]scale=")
    # video_thumbnails: poster candidates and storyboard tiles, no rendition, no audio
    assert outputs(vt, tmp_path / "vt") == THUMBS_OUT
    assert "libx264" not in vt and "-c:a" not in vt and "0:1" not in vt
    assert graph(vt).startswith("[0:0]split=2[")
    # each reads the source once: one input, and the decoded video enters the graph once
    for args in (tc, vt):
        assert len(inputs(args)) == 1 and graph(args).count("[0:0]") == 1


def test_both_pipelines_share_one_input_one_decode_and_one_split(tmp_path: Path) -> None:
    tc, _ = built(tmp_path / "tc", "clip.mp4", ["transcode"])
    vt, _ = built(tmp_path / "vt", "clip.mp4", ["video_thumbnails"])
    both, branches = built(tmp_path / "both", "clip.mp4", ["transcode", "video_thumbnails"])
    assert [type(b).__name__ for b in branches] == ["TranscodeBranch", "ThumbnailBranch"]
    assert len(inputs(both)) == 1 and inputs(both)[0] == f"file:{tmp_path}/both/clip.mp4"
    # one decode: the decoded video enters the graph once and is split to every branch (1 + 2 copies)
    assert graph(both).count("[0:0]") == 1 and graph(both).startswith("[0:0]split=3[")
    assert (
        chains(both).count("split") == chains(tc).count("split") + 1
    )  # the ladder's own split + the shared one
    # the group's command is the two branches side by side: every output and filter of each
    assert outputs(both, tmp_path / "both") == TRANSCODE_OUT | THUMBS_OUT
    assert chains(both) == ["split", *chains(tc), *chains(vt)[1:]]
    assert "-ss" not in both  # transcode decodes everything: the poster branch does not seek


def test_a_poster_alone_seeks_and_an_audio_source_gets_no_thumbnail_branch(tmp_path: Path) -> None:
    poster, branches = built(tmp_path / "poster", "clip.mp4", ["video_thumbnails"], sprite=False)
    i = poster.index("-i")
    assert "-ss" in poster[:i] and "-noaccurate_seek" in poster[:i]
    assert outputs(poster, tmp_path / "poster") == {"scratch/poster/poster%02d.bmp"}
    assert branches[0].seek is not None
    audio, branches = built(
        tmp_path / "audio", "tone.m4a", ["transcode", "video_thumbnails"], audio_outputs=["aac", "opus"]
    )
    assert [type(b).__name__ for b in branches] == ["TranscodeBranch"]  # no video: no thumbnail branch
    # fragmented MP4 streams through a pipe; WebM's muxer seeks back to finish: staged in scratch
    assert outputs(audio, tmp_path / "audio") == {"out/transcode/aac.m4a", "scratch/staged-opus.webm"}
    assert "-filter_complex" not in audio and "image2" not in audio


def test_a_seek_cannot_cut_a_whole_decode_short(tmp_path: Path) -> None:
    """Only a branch of a group that needs a few frames may seek; a group decoding everything refuses."""
    _, (tc,) = built(tmp_path / "tc", "clip.mp4", ["transcode"])
    _, (poster,) = built(tmp_path / "p", "clip.mp4", ["video_thumbnails"], sprite=False)
    assert isinstance(tc, TranscodeBranch) and poster.seek is not None
    with pytest.raises(ValueError, match="input seek"):
        group.command(tc.decode, [tc, poster])
