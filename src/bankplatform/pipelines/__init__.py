"""Kedro pipelines of bankplatform, one package each; `find_pipelines()` registers them."""
