"""Responses assembled from the engine's token events, one module per API family."""
