"""``python -m bankplatform``: the bankplatform command line."""

from bankplatform.cli import main

if __name__ == "__main__":
    main()
