"""A study: recipe -> planned cells -> train and evaluate each -> stored rows and
predictions -> the report. Imports every other package of the lab.

plan (cells and their data), store (the output folder and resume), cells (one cell: train,
then evaluate), probes (the out-of-task probe splits of a cell), base_model (the shared base
weights and the adapter check), run (the loop over cells, workers and the report), claims
(cells claimed by concurrent workers), models (resolving and loading a base model),
preflight and estimate / memory (checks and costs before anything runs), cli.
"""
