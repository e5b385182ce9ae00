"""edgebench agent: measures LiteRT models on the device it runs on."""

from agent.wire.version import VERSION as __version__

__all__ = ["__version__"]
