"""End-to-end tests: `pupil-records run` and its processes, driven over HTTP."""
