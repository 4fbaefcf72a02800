"""The tiny second course's content: its trusted re-checks and its generated submissions."""
