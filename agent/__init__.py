"""edgebench agent: measures LiteRT models on the device it runs on."""

__version__ = "0.1.0"
