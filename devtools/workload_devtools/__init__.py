"""Development and test helpers for the workload: never part of the production wheel or image."""
