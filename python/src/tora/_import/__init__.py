"""Importers: read runs from another tracker's files (or server) and upload them to Tora.

Each source has a reader module (``<source>_reader.py``) with ``read(arg) -> Iterator[ImportedRun]``;
``_upload.py`` turns those runs into experiments, exactly once.
"""
