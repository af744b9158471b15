"""The module loader consumer plugin: ingestion of real .ko files and module loading."""
