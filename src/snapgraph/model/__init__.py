"""The graph model, its two file formats and its validation (no runtime here)."""
