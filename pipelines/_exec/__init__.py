"""Wrappers around external programs: the only modules that start subprocesses."""
