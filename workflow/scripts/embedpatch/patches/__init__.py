"""Stage 3: each exam's patches cut from its images into one HDF5 shard.

In the order a run meets them: `spec` (the typed model of what extraction is asked to
do) with `identity` (its canonical JSON and hashes), `exam_specs` (each exam's
specification built from its rows of the stage-2 tables, again only when they changed),
`plan` (the tables read, every exam's specification, in batches, published for the
jobs), `batches` (exams spread over a fixed number of jobs),
`negative_images` (which images negative windows come from) and `negative_windows`
(where on an image), `padding` (tissue- and black-padded squares), `extract` (one
exam), `shards` (the shard format, written and read), `batch_job` (one extraction job:
specifications in, complete shards out, and shard verification), `manifest` (every
patch and rejection of the run in one table), `needed_images` (the images a run will
read, for those who download first).
"""
