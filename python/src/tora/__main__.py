"""``python -m tora sync``: upload what offline runs and outages left on disk.
``python -m tora import SOURCE ARG``: bring runs from MLflow, TensorBoard, W&B, trackio or CSV files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import _config, _validation
from ._exceptions import ToraConfigurationError
from ._import import SOURCES, reader
from ._import.model import ToraImportError
from ._import.upload import Api, Progress, Summary, import_runs, resolve_workspace
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
    _add_import(commands)
    args = parser.parse_args(argv)
    api_key = args.api_key or settings.api_key
    if api_key:
        try:
            _validation.api_key(api_key, "--api-key" if args.api_key else "TORA_API_KEY")
        except ToraConfigurationError as e:
            print(f"python -m tora {args.command}: {e}", file=sys.stderr)
            return 2
    if args.command == "import":
        return _import(args, settings, api_key)

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


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sources = "\n".join(f"  {name:12} {what}" for name, what in SOURCES.items())
    run = commands.add_parser(
        "import",
        help="import runs from MLflow, TensorBoard, W&B, trackio or CSV files",
        description="Import runs (parameters, tags, metrics over steps with their times) into a workspace. "
        "Each run is imported once: running the same import again adds nothing.",
        epilog=f"sources:\n{sources}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("source", choices=list(SOURCES), metavar="SOURCE", help=", ".join(SOURCES))
    run.add_argument("arg", metavar="ARG", help="what to read: a path (or, for mlflow, a tracking URI)")
    run.add_argument("--workspace", metavar="NAME|ID", help="the workspace to import into (default: Personal)")
    run.add_argument("--dry-run", action="store_true", help="read and count, send nothing (no server needed)")
    run.add_argument("--server-url", help="API root (default: TORA_BASE_URL)")
    run.add_argument("--api-key", help="API key (default: TORA_API_KEY)")


def _import(args: argparse.Namespace, settings: _config.Settings, api_key: str | None) -> int:
    def fail(message: str) -> int:
        print(f"python -m tora import: {message}", file=sys.stderr)
        return 1

    summary = Summary()
    api = None
    try:
        read = reader(args.source)
        workspace_id = ""
        if not args.dry_run:
            if not api_key:
                return fail("no API key: set TORA_API_KEY or pass --api-key (or use --dry-run)")
            api = Api(args.server_url or settings.base_url, api_key, settings.timeout)
            workspace_id, name = resolve_workspace(api, args.workspace)
            print(f"importing {args.source} {args.arg} into workspace {name!r} on {api.base}", file=sys.stderr)
        import_runs(read(args.arg), api, workspace_id, summary, Progress())
    except ToraImportError as e:
        if summary.runs_imported or summary.runs_present or summary.runs_completed or summary.runs_failed:
            for line in summary.lines(dry_run=args.dry_run):
                print(line)
        return fail(str(e))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same import again to finish it (nothing is stored twice)", file=sys.stderr)
        for line in summary.lines():
            print(line)
        return 130
    finally:
        if api is not None:
            api.close()
    for line in summary.lines(dry_run=args.dry_run):
        print(line)
    return 1 if summary.runs_failed else 0


if __name__ == "__main__":
    sys.exit(main())
