"""Customer features: snapshot computation and work with the Feast store."""
