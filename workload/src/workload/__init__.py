"""IMDB sentiment workload: ingest, train, evaluate, publish and serve a model bundle."""

__version__ = "0.1.0"
