"""Records -> PK samplers -> tf.data pipelines. See docs/ARCHITECTURE.md."""

from kreid.data.records import Record, ReidDataset

__all__ = ["Record", "ReidDataset"]
