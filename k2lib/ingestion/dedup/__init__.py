"""ingestion/dedup."""
