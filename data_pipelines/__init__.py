"""Data pipelines: procedural oscillation videos, video ingestion, preprocessing, input pipelines."""
