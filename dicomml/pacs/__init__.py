"""dicomml.pacs (see DESIGN.md)."""
