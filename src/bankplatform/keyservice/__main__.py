"""``python -m bankplatform.keyservice --root R --env E``: what the client spawns on demand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bankplatform.errors import BankplatformError
from bankplatform.keyservice.server import serve


def main() -> None:
    """Parse the arguments and serve; a setup problem is one line on stderr."""
    parser = argparse.ArgumentParser(prog="bankplatform keyservice")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--env", required=True)
    parser.add_argument("--socket-group")
    parser.add_argument("--idle-seconds", type=float)
    args = parser.parse_args()
    try:
        serve(args.root.resolve(), args.env, args.socket_group, args.idle_seconds)
    except BankplatformError as error:
        sys.exit(f"Error: {error}")


if __name__ == "__main__":
    main()
