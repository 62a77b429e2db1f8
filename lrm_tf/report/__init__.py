"""What a run leaves behind and how it is read: the run directory, report files, plots, and the
comparison with the papers' published numbers."""
