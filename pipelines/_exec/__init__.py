"""Wrappers around external programs and the libraries that drive them.

One module per program: it finds the program, checks its version once, builds and runs its commands
with timeouts, and turns its failures into ``config.errors`` exceptions.  These are the only modules
that touch ``subprocess``, ``ffmpeg-python``, PyAV or ``pytesseract``.
"""
