"""Drift and quality monitoring of the served model: the decision log against the
champion's validated window, Evidently's tests, and one governed action per window."""
