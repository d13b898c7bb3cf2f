"""toolkit: Elasticsearch-native text-to-image and image-to-image search with CLIP."""

__version__ = "0.1.0"
