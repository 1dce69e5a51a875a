"""Lineage of every Kedro run, from a notebook or from production, into MLflow.

``hooks.LineageHook`` records one MLflow run per Kedro run: who ran what, on which
code, with which parameters, on which data (content fingerprints), with which
environment, how long each node took, and how it ended. When the tracking store
cannot be reached the ``local`` env spools the record to a file that
``bankplatform lineage replay`` sends later; ``prod`` refuses to start.
"""
