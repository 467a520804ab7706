"""Output writers: atomic fsspec folders and JSON (``storage.Folder``), size-bounded Parquet
shards (``storage.ShardWriter``) and Megatron's ``.bin/.idx`` indexed datasets (``indexed``)."""
