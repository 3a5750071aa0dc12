"""haqsearch."""
