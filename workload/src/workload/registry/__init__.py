"""The model registry over the data lake's `models/` prefix: listing, the quality gate, and promotion.

No service and no database: a bundle is a folder under `models/`, and what the registry knows about it beyond its
manifest lives in small JSON files next to it (`<version>.evaluation.json`, `<version>.gate.json`), never inside
the verified bundle folder.
"""
