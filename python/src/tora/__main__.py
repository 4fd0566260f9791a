"""``python -m tora sync``: upload what offline runs and outages left on disk."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import _config, _validation
from ._exceptions import ToraConfigurationError
from ._sync import sync


def main(argv: list[str] | None = None) -> int:
    settings = _config.load()
    parser = argparse.ArgumentParser(prog="python -m tora", description="Tora SDK tools")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "sync",
        help="upload spooled points (offline runs, outages) to the server",
        description="Upload every spool file in the cache directory that no running process is writing. "
        "Each point is stored once, however often sync runs.",
    )
    run.add_argument("--server-url", help="API root (default: TORA_BASE_URL, else the URL each run used)")
    run.add_argument("--api-key", help="API key (default: TORA_API_KEY)")
    run.add_argument("--cache-dir", type=Path, default=settings.cache_dir, help=f"default: {settings.cache_dir}")
    args = parser.parse_args(argv)
    api_key = args.api_key or settings.api_key
    if api_key:
        try:
            _validation.api_key(api_key, "--api-key" if args.api_key else "TORA_API_KEY")
        except ToraConfigurationError as e:
            print(f"python -m tora sync: {e}", file=sys.stderr)
            return 2

    report = sync(
        args.cache_dir,
        server_url=args.server_url or os.environ.get("TORA_BASE_URL") or None,
        api_key=api_key,
        timeout=settings.timeout,
    )
    busy = f"; {report.busy} files in use, skipped" if report.busy else ""
    artifacts = ""
    if report.artifacts or report.artifacts_left:
        artifacts = f"; uploaded {report.artifacts} artifacts, {report.artifacts_left} left on disk"
    print(f"uploaded {report.uploaded} points; {report.left} left on disk{artifacts}{busy}")
    return 1 if report.left or report.artifacts_left or report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
