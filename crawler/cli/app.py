"""The command line's entry point: the click group, and errors mapped to exit codes in one place.

Exit codes: 0 all done; 1 items failed, the API was unreachable, or the disk/manifest failed;
2 bad usage or input; 3 another run holds the output directory; 130/143 stopped by SIGINT/SIGTERM.
Anything a user can cause ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import difflib
import signal
import sys

import click

from crawler.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AllenMirrorError,
    RemoteError,
    exit_code_for,
    first_error,
)
from crawler.redact import mask_url


@click.group(
    name="allen-mirror",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="allen-mirror", prog_name="allen-mirror")
def app() -> None:
    """Mirror Allen Brain Atlas section images: complete, polite, resumable, never corrupt."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        where = f" ({mask_url(exc.url)})" if exc.url else ""
        return f"the API failed after retries: {exc}{where}"
    return str(exc)


def no_such_option(exc: click.NoSuchOption) -> str:
    """Click lists close option names alphabetically; the closest one first helps more."""
    closest = difflib.get_close_matches(exc.option_name, exc.possibilities or [], n=3, cutoff=0.6)
    if not closest:
        return f"No such option: {exc.option_name}"
    return f"No such option: {exc.option_name} (did you mean {' or '.join(closest)}?)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``allen-mirror`` and ``python -m crawler``; returns the exit code."""
    try:
        result = app.main(args=argv, prog_name="allen-mirror", standalone_mode=False)
        return int(result) if isinstance(result, int) else EXIT_OK
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.NoSuchOption as exc:
        sys.stderr.write(f"allen-mirror: error: {no_such_option(exc)}\n")
        return EXIT_USAGE
    except click.UsageError as exc:
        message = exc.format_message().replace("\n", " ")
        sys.stderr.write(f"allen-mirror: error: {message}\n")
        return EXIT_USAGE
    except click.Abort:
        sys.stderr.write("allen-mirror: interrupted\n")
        return 128 + signal.SIGINT
    except KeyboardInterrupt:
        sys.stderr.write("allen-mirror: interrupted\n")
        return 128 + signal.SIGINT
    except BaseException as raised:
        error = first_error(raised)
        if isinstance(error, SystemExit):
            return int(error.code or 0) if isinstance(error.code, int) else EXIT_FAILED
        if isinstance(error, KeyboardInterrupt):
            sys.stderr.write("allen-mirror: interrupted\n")
            return 128 + signal.SIGINT
        if isinstance(error, AllenMirrorError):
            sys.stderr.write(f"allen-mirror: error: {_describe(error)}\n")
            return exit_code_for(error)
        if isinstance(error, OSError):
            sys.stderr.write(f"allen-mirror: error: {error.strerror or error}\n")
            return EXIT_FAILED
        raise


def run() -> None:
    """Console-script wrapper."""
    from crawler.cli.common import own_process  # common imports this module

    own_process()
    sys.exit(main())
