"""The Elasticsearch-compatible test cluster (placeholder docstring; the core helper owns this file)."""
