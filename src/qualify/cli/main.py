"""The `qualify` command line: Typer commands over the same services the API uses.

Every expected failure is a `QualifyError`: it is printed as what is wrong and how to fix
it, with exit code 2, never as a traceback. Commands live in modules by subject; importing
them registers them on the app.
"""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import sys

from qualify import __version__
from qualify.cli import (  # noqa: F401  (importing registers the commands)
    batch,
    demo,
    files,
    leads,
    models,
    render,
    routing,
    serve,
    webhooks,
)
from qualify.cli.shared import app
from qualify.errors import IngestError, ModelError, QualifyError


@app.command()
def version() -> None:
    """Print Qualify's version."""
    render.console.print(__version__)


def main() -> None:
    """Entry point: run the app, turning Qualify's errors into one clear line and exit 2."""
    try:
        app()
    except ModelError as exc:
        render.err.print(exc.render(), markup=False)
        sys.exit(2)
    except (QualifyError, IngestError) as exc:
        render.err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if not _from_database(exc):
            raise
        reason = getattr(exc, "orig", None) or exc  # the database refused: say so in one line
        render.err.print(f"error: the database refused the operation: {reason}", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)


def _from_database(exc: Exception) -> bool:
    """Whether SQLAlchemy raised `exc`. Commands that need no store never import SQLAlchemy
    (`qualify score` starts in a third of the time), so look it up only if it is loaded."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)
