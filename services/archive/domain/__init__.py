"""Retention rules of the archive: pure code with no web or database imports."""
