"""Test support: fakes and helpers the tests share (never shipped in the package)."""
