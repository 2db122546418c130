"""Wire formats, each translated in both directions at one boundary."""
