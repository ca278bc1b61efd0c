"""Data: procedural oscillation videos, video ingestion, the prepare job (`gid prepare`, Beam), the
dataset format, and the training input (tf.data readers of the prepared datasets)."""
