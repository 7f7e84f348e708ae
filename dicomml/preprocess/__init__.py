"""dicomml.preprocess (see DESIGN.md)."""
