"""Smear fields: detector, scale from red cells, tiling + merge, differential count."""
