"""Benchmarks of pupil-records against the raw eventsourcing library.

Run them with `make bench` or `python -m bench --help`. Every figure is
measured next to the same operation done with the bare library on the same
database in the same run, and printed with their ratio.
"""
