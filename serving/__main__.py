"""``python -m serving``: the container's entry point (and ``orchestrator serve``'s, which execs it).

Reads the settings from the command line and the environment (:mod:`serving.settings`), then serves
(:func:`serving.server.run`). Errors are one line on stderr, ``error: ...``, never a traceback:
the project's errors exit with their own code (2 for settings and usage), Ctrl-C 130, and anything
unexpected 70 naming only its type and where it was raised (``ORCHESTRATOR_DEBUG=1`` shows the
traceback). Nothing of the control plane's CLI is imported: start-up pays only for the endpoint.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrator.core.errors import OrchestratorError

# sysexits.h EX_SOFTWARE, "an internal software error has been detected" (as the orchestrator
# command exits on an exception it did not expect).
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _say(message: str) -> None:
    # One line of printable characters: messages quote URIs, paths and values from the environment.
    text = " ".join(message.split())
    sys.stderr.write("error: " + "".join(c if c.isprintable() else " " for c in text) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, then serve until stopped; the process's exit code."""
    from serving.settings import UsageError, parse

    try:
        settings = parse(sys.argv[1:] if argv is None else argv, os.environ)
        from serving.server import run

        run(settings)
    except UsageError as err:
        _say(f"{err} (see --help)")
        return err.exit_code
    except OrchestratorError as err:
        _say(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("ORCHESTRATOR_DEBUG"):
            raise
        frames = exc.__traceback__
        while frames is not None and frames.tb_next is not None:
            frames = frames.tb_next
        where = f" at {Path(frames.tb_frame.f_code.co_filename).name}:{frames.tb_lineno}" if frames else ""
        _say(
            f"internal error: {type(exc).__name__}{where}; this is a bug, please report it "
            "(ORCHESTRATOR_DEBUG=1 shows the traceback)"
        )
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
