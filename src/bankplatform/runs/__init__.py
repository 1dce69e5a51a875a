"""How Kedro runs of a workspace behave on the console and towards each other:
one progress line per stage (``progress``), and one writer per dataset
(``lock``: a run that would write what another running one reads or writes
waits for it or is refused up front)."""
