"""``python -m bankplatform``: the bankplatform command line."""

from bankplatform.cli.main import main

if __name__ == "__main__":
    main()
