"""What reviewers look at: the pipeline site (kedro-viz) made safe for offline rooms."""
