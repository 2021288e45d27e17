"""Engines carry the protocol's messages: in-process (default) and Flower."""
