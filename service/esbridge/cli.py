"""Command line: ``esbridge validate|schema|serve|run|preview|gate|install-plugin``.

Adding a subcommand = a handler ``cmd_<name>`` (takes the parsed arguments, returns the exit
code; its docstring is the help: first line, then the description) + one ``_add_<name>``
that declares it with :func:`_subcommand` (the shared options by name) and adds its own
arguments + its name in ``COMMANDS``. Imports are lazy: ``esbridge run`` and the plugin's
direct mode load only what they use.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from esbridge import __version__

Handler = Callable[[argparse.Namespace], int]
Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

DEFAULT_CHECKS = "checks"


def _subcommand(
    sub: Any,
    name: str,
    func: Handler,
    options: str = "config",
    help: str | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Declare one subcommand: its parser, its handler, and the options several share.

    ``options`` names them: ``config`` (``--config``), ``quick`` (``--config``, ``--es-url``,
    ``--checks``), ``check`` (the ``CHECK_NAME`` argument). The help line and description
    are the handler's docstring (first line, then the rest) unless given.
    """
    first, _, rest = (func.__doc__ or "").strip().partition("\n\n")
    parser = sub.add_parser(
        name,
        help=help or first,
        description=description or " ".join(rest.split()) or None,
    )
    parser.set_defaults(func=func)
    if "config" in options or "quick" in options:
        parser.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            default=os.environ.get("ESBRIDGE_CONFIG"),
            help="service configuration file (default: $ESBRIDGE_CONFIG)",
        )
    if "quick" in options:
        parser.add_argument(
            "--es-url",
            metavar="URL",
            help="Elasticsearch URL(s), comma-separated, for the 'default' connection "
            "(also $ESBRIDGE_ES_URL)",
        )
        parser.add_argument(
            "--checks", action="append", metavar="PATH", help="check file or directory (repeatable)"
        )
    if "check" in options:
        parser.add_argument("name", metavar="CHECK_NAME")
    return parser


def _load_errors() -> tuple[type[Exception], ...]:
    """The errors that say the configuration or the check files are wrong."""
    from esbridge.config import ConfigError
    from esbridge.loader import CheckFileError

    return ConfigError, CheckFileError


def _problems(exc: Exception) -> tuple[str, list[str]]:
    """What one of :func:`_load_errors` says: (what is wrong, one line per problem)."""
    from esbridge.config import ConfigError
    from esbridge.loader import CheckFileError

    if isinstance(exc, ConfigError):
        return "configuration problem", list(exc.messages)
    assert isinstance(exc, CheckFileError)
    return "check files have problems", [str(issue) for issue in exc.issues]


def cmd_validate(args: argparse.Namespace) -> int:
    """check the configuration and check files, print every problem

    Validate check files (and the configuration with --config). Exit 0 when everything is
    valid, 1 otherwise.
    """
    from esbridge.config import load_settings, validate_references
    from esbridge.loader import load_checks

    problems: list[str] = []
    settings = None
    if args.config:
        try:
            settings = load_settings(args.config)
        except _load_errors() as exc:
            problems.extend(_problems(exc)[1])
    paths: list[str | Path] = list(args.paths)
    if not paths:
        paths = list(settings.checks) if settings is not None else [DEFAULT_CHECKS]
    checkset = None
    try:
        checkset = load_checks(paths)
    except _load_errors() as exc:
        problems.extend(_problems(exc)[1])
    if settings is not None and checkset is not None:
        problems.extend(str(issue) for issue in validate_references(settings, checkset))
    if problems:
        for line in problems:
            print(line)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    assert checkset is not None
    for warning in checkset.warnings:
        print(f"warning: {warning}")
    if args.config:
        print(f"OK: config {args.config}")
    files = len(checkset.files)
    print(f"OK: {len(checkset)} checks in {files} file{'s' if files != 1 else ''}")
    return 0


def _add_validate(sub: Any) -> None:
    parser = _subcommand(sub, "validate", cmd_validate)
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="check files or directories (default: 'checks' from the config, or ./checks)",
    )


def cmd_schema(args: argparse.Namespace) -> int:
    """print the JSON Schema of a check file (for editors)

    Print the JSON Schema of a check file. Save it and point your editor at it, e.g. first
    line '# yaml-language-server: $schema=./esbridge-checks.schema.json'.
    """
    from esbridge.models import check_file_schema

    try:
        schema = check_file_schema(args.kind)
    except ValueError as exc:
        print(f"esbridge schema: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(schema, indent=2))
    return 0


def _add_schema(sub: Any) -> None:
    from esbridge.models import KINDS

    parser = _subcommand(sub, "schema", cmd_schema, options="")
    parser.add_argument("--kind", choices=KINDS, help="only checks of this kind")


def _settings_from_args(args: argparse.Namespace) -> Any:
    """Config file, then environment, then the quick flags (highest)."""
    from esbridge.config import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "checks", None):
        overrides["checks"] = tuple(args.checks)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    es_url = getattr(args, "es_url", None) or os.environ.get("ESBRIDGE_ES_URL")
    settings = load_settings(args.config, **overrides)
    if es_url:
        from esbridge.config import ConfigError
        from esbridge.limits import check_node_url

        default = settings.elasticsearch.get("default")
        urls = tuple(u.strip().rstrip("/") for u in es_url.split(",") if u.strip())
        for url in urls:  # the checks a URL in the configuration file gets
            try:
                check_node_url(url)
            except ValueError as problem:
                where = "--es-url" if getattr(args, "es_url", None) else "ESBRIDGE_ES_URL"
                raise ConfigError(f"{where}: {problem}") from None
        if not urls:
            raise ConfigError("--es-url names no URL")
        if default is None:
            from esbridge.config import ConnectionConfig

            default = ConnectionConfig()
        connections = dict(settings.elasticsearch)
        connections["default"] = default.model_copy(update={"urls": urls})
        settings = settings.model_copy(update={"elasticsearch": connections})
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    """run the service: schedule checks, serve the API, /metrics and the status page

    Run esbridge: every check on its interval, results over HTTP. SIGHUP (or POST
    /api/v1/reload) reloads the check files; SIGTERM stops cleanly.
    """
    from esbridge.config import validate_references
    from esbridge.loader import load_checks
    from esbridge.logs import setup_logging
    from esbridge.serve import secrets_of, serve

    settings = checkset = None
    try:
        settings = _settings_from_args(args)
        checkset = load_checks(list(settings.checks))
        problems = [str(i) for i in validate_references(settings, checkset)]
    except _load_errors() as exc:
        problems = _problems(exc)[1]
    if problems:
        print("esbridge: not starting, the configuration has problems:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    assert settings is not None and checkset is not None
    setup_logging(args.log_format or settings.log.format, settings.log.level, secrets_of(settings))
    return serve(settings, checkset)


def _add_serve(sub: Any) -> None:
    parser = _subcommand(sub, "serve", cmd_serve, options="quick")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 9108)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="log format (default from config)"
    )


def run_one(
    checks_paths: list[str],
    name: str,
    es_url: str | None,
    config_path: str | None,
    at: float | None = None,
) -> tuple[str, int]:
    """Evaluate one check now (or as at ``at``): (Nagios text, exit code). Plugin direct mode."""
    from esbridge.serve import run_one_text

    args = argparse.Namespace(config=config_path, checks=checks_paths or None, es_url=es_url)
    return run_one_text(_settings_from_args(args), name, at)


def cmd_run(args: argparse.Namespace) -> int:
    """evaluate one check now and print Nagios plugin output (exit code 0-3)

    Evaluate CHECK_NAME against Elasticsearch now, print the plugin output exactly as the
    service's /nagios endpoint would, exit with its code.
    """
    try:
        at = _parse_time(args.at) if args.at else None
    except ValueError as exc:
        print(f"UNKNOWN - {exc}")
        return 3
    try:
        text, code = run_one(args.checks or [], args.name, args.es_url, args.config, at)
    except _load_errors() as exc:
        what, lines = _problems(exc)
        print(f"UNKNOWN - {what}: " + ", ".join(lines))
        return 3
    except KeyError as exc:
        print(f"UNKNOWN - {exc.args[0]}")
        return 3
    except Exception as exc:  # never a traceback and exit 1 (Nagios would read WARNING)
        print(f"UNKNOWN - internal error: {type(exc).__name__}: {str(exc)[:300]}")
        return 3
    print(text)
    return code


def _add_run(sub: Any) -> None:
    parser = _subcommand(sub, "run", cmd_run, options="quick check")
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="evaluate as at TIME (unix seconds or ISO 8601, e.g. 2026-11-28T03:00:00Z): "
        "the window ends at TIME instead of now",
    )


def _parse_time(text: str) -> float:
    """Unix seconds or ISO 8601 (a time without zone is UTC)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use unix seconds or ISO 8601 like 2026-11-28T03:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def cmd_preview(args: argparse.Namespace) -> int:
    """replay a check over past data: chart, transitions, time per state, pages

    Evaluate CHECK_NAME as it would have run at every STEP over the last SINCE, from the
    data in Elasticsearch, and show what it would have said. Exit 0 when shown, 2 on bad
    input or a cluster kind (no history), 3 when Elasticsearch failed. See docs/preview.md.
    """
    from esbridge.preview import PreviewError
    from esbridge.serve import preview_one

    def fail(code: int, message: str) -> int:
        print(f"esbridge preview: {message}", file=sys.stderr)
        return code

    try:
        until = _parse_time(args.until) if args.until else None
        settings = _settings_from_args(args)
        text = preview_one(
            settings, args.name, args.since, args.step, until, args.format, args.max_points
        )
    except _load_errors() as exc:
        what, lines = _problems(exc)
        return fail(2, f"{what}: " + ", ".join(lines))
    except KeyError as exc:
        return fail(2, str(exc.args[0]))
    except PreviewError as exc:
        return fail(3 if exc.kind == "elasticsearch" else 2, exc.message)
    except ValueError as exc:
        return fail(2, str(exc))
    print(text)
    return 0


def _add_preview(sub: Any) -> None:
    parser = _subcommand(sub, "preview", cmd_preview, options="quick check")
    parser.add_argument("--since", default="24h", help="how far back (default 24h)")
    parser.add_argument(
        "--step", help="one point per STEP (default: the check's interval, at most ~300 points)"
    )
    parser.add_argument(
        "--until", metavar="TIME", help="end of the period (unix seconds or ISO 8601; default now)"
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--max-points", type=int, default=10_000, help="refuse more points (default 10000)"
    )


def _add_gate(sub: Any) -> None:
    from esbridge import gateclient

    parser = _subcommand(
        sub,
        "gate",
        gateclient.run,
        options="",
        help="deployment gate: wait until the selected checks pass or fail (exit 0/1/2/3)",
        description="Ask a running esbridge whether the selected checks stayed OK for a period "
        "after --since. Exit 0 pass, 1 fail, 2 error, 3 unknown. See docs/gate.md.",
    )
    gateclient.add_arguments(parser)


def cmd_install_plugin(args: argparse.Namespace) -> int:
    """write check_esbridge into a Nagios/Icinga plugin folder, the fastest way to start it

    Writes DIR/check_esbridge: a short Python script run as "#!PYTHON -IS" (isolated, without
    site-packages) that imports the plugin module installed with esbridge, compiled by PYTHON
    now. It needs no shell and compiles nothing per run, unlike the pip launcher on PATH or a
    copied plugin file. Exit 0 when written, 2 when it cannot be (the reason on stderr).
    """
    from esbridge.plugin.install import InstallError, install

    try:
        path = install(Path(args.directory), python=args.python, force=args.force)
    except InstallError as exc:
        print(f"esbridge install-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}; try it as the user Nagios runs it as, e.g.")
    print(f"  sudo -u nagios {path} -H http://127.0.0.1:9108 -C CHECK_NAME")
    return 0


def _add_install_plugin(sub: Any) -> None:
    parser = _subcommand(sub, "install-plugin", cmd_install_plugin, options="")
    parser.add_argument(
        "directory", metavar="DIR", help="plugin folder, e.g. /usr/lib/nagios/plugins"
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter of the '#!' line (default: the one running this command)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a check_esbridge it did not write"
    )


COMMANDS: list[Registrar] = [
    _add_validate,
    _add_schema,
    _add_serve,
    _add_run,
    _add_preview,
    _add_gate,
    _add_install_plugin,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esbridge",
        description="Threshold checks as Elasticsearch queries, for Nagios, Icinga 2 and "
        "Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"esbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["run"]:
        # ``esbridge run`` is a Nagios plugin too: a usage error must read UNKNOWN (exit 3,
        # one line on stdout), never argparse's exit 2, which Nagios shows as CRITICAL.
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                args = parser.parse_args(words)
        except SystemExit as exc:
            sys.stderr.write(said.getvalue())
            if exc.code in (0, None):  # --help
                raise
            reason = (said.getvalue().strip().splitlines() or ["bad arguments"])[-1]
            reason = reason.split(" error: ", 1)[-1]  # "esbridge run: error: ..."
            print(f"UNKNOWN - esbridge run: {reason} (see esbridge run --help)")
            return 3
    else:
        args = parser.parse_args(words)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
