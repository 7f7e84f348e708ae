"""dicomml.train (see DESIGN.md)."""
