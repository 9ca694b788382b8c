"""Shared pieces of the tests: small test networks, checks used by several test files, and the
independent references that are not part of cxrfast (pydicom's display stage). Importable as
`helpers` through pytest's pythonpath (pyproject.toml)."""
