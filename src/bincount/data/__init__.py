"""Data: sources in the bucket layout, the manifest, transforms and the data module."""
