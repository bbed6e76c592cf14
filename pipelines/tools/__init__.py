"""Wrappers around external programs and the libraries that drive them.

One module per program: it finds the program, checks its version once, builds its commands and
parses their output.  Every child process is started by :func:`pipelines.tools.runner.run` (the only
module that touches ``subprocess``), which applies the job's deadline and turns failures into
``config.errors`` exceptions.  These are the only modules that touch ``ffmpeg-python``, PyAV or
``pytesseract``.  None of them deletes workspace files: the engine does.
"""
