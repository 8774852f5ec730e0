#!/usr/bin/env python3
"""Container health check: exit 0 when a URL returns HTTP 200, else exit 1.

The slim Python image has no curl or wget, so the compose file runs this
script, e.g. `pupil-records-healthcheck http://127.0.0.1:8000/healthz`.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_TIMEOUT_SECONDS = 5.0


def probe(url: str, timeout: float) -> str | None:
    """Request `url` once; return why it is unhealthy, or None on HTTP 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return f"{url} returned HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{url} did not respond: {reason}"
    if status != 200:
        return f"{url} returned HTTP {status}"
    return None


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the URL and the timeout of the check."""
    parser = argparse.ArgumentParser(
        prog="pupil-records-healthcheck",
        description="Exit 0 when the URL returns HTTP 200, else exit 1.",
    )
    parser.add_argument("url", help="http:// or https:// URL to request")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for the response (default: %(default)s)",
    )
    arguments = parser.parse_args(argv)
    if not arguments.url.startswith(("http://", "https://")):
        parser.error(f"expected an http:// or https:// URL, got {arguments.url!r}")
    if not arguments.timeout > 0:
        parser.error("--timeout must be positive")
    return arguments


def main(argv: Sequence[str]) -> int:
    """Run the check and return the exit code."""
    arguments = parse_arguments(argv)
    problem = probe(arguments.url, arguments.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
