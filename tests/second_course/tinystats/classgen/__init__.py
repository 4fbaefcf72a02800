"""Generated submissions of the tiny course (one catalogue per assignment)."""
