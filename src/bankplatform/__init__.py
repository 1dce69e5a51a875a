"""bankplatform: a notebook-first, governed ML platform workspace for banks."""

__version__ = "0.1.0"
