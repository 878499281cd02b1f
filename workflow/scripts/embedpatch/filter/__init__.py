"""Stage 1: which metadata rows go on to ROI parsing, with a reason for each row dropped.

`stage` (the checks, in order, and the stage's outputs), `clinical` (the
laterality-matched clinical join), `preflight` (before any job: do the table's paths
lead to images?).
"""
