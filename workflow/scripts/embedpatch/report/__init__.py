"""What a run reports: the summary file, the figures, and the terminal's last words.

`summary` (`summary.json`: the funnel and every stage's counts), `figure_data` (the
numbers and selections each figure shows; no matplotlib), `figures` (the drawing, one
function per figure, and the rule's entry), `end_of_run` (what the terminal says when a
run ends or fails, and the `check_run` verdict).
"""
