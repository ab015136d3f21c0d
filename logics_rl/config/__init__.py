"""The one typed config schema (``schema.py``) and its loader (``loader.py``)."""
