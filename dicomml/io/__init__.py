"""dicomml.io (see DESIGN.md)."""
