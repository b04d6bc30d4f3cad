"""esbridge development tooling: test clusters, sample data, demo (not in the service wheel)."""
