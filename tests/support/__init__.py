"""Test support: document makers, test engines (an engine plugin), clocks and helpers."""
