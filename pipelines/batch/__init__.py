"""Many sources: the process pool, the contact-sheet report, the cost of a prefix."""
