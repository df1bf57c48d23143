"""Report rendering: a dated folder per run with HTML and CSV (see render.py)."""
