"""Pulumi component resources for imdb-sentiment, one module per area.

Every component is a `pulumi.ComponentResource` typed `imdb-sentiment:<area>:<Name>` that takes a typed args
dataclass, parents its children to itself and exposes its outputs as attributes.
"""
