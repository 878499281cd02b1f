"""What a run reports: the summary file, the figures, and the terminal's last words.

`summary` (`summary.json`: the funnel and every stage's counts), `figure_data` (the
numbers and selections each figure shows; no matplotlib), `run_tables` (the run's tables
as figures read them, and what each figure of pixels shows), `figures` (which figure is
drawn from which table, and the rules' entry) with `figure_cache` (a figure whose tables,
or sample and images, are unchanged is copied, not drawn), the drawing in
`table_figures`, `image_figures` and `flip_figure` (their shared look in `drawing`), and
`end_of_run` (what the terminal says when a run ends or fails, and the `check_run`
verdict).
"""
