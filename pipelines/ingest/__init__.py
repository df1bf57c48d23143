"""Ingestion: the connector contract (``contract.py``), the one runner that reads any stream into
``raw.*`` for a night or a backfill (``runner.py``), the raw upsert and the quarantine (``raw.py``),
and threaded reads (``fetch.py``)."""
