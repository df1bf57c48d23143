"""Dagster assets: thin wiring from resources to the plain functions in ``pipelines``."""
