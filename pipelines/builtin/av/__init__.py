"""The ffmpeg pipelines (``transcode``, ``video_thumbnails``) and the one ffmpeg run they share."""
