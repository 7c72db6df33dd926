"""Parts two or more methods share (one place, never a sibling method's package)."""
