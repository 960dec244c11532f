"""ingestion/sequence."""
