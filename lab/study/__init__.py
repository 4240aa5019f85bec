"""A study: recipe -> planned cells -> train and evaluate each -> stored rows and
predictions -> the report. Imports every other package of the lab.

plan (cells, and each cell's CellPlan: demos, training data, settings, variants), context
(what fits the model's context), cells (one cell: train, then evaluate each variant on the
eval and probe splits), store (results rows, the output folder over time; its paths:
lab/core/layout.py), base_model (the shared base weights and the adapter check), run (the
loop over cells, workers and the report), publish (the report), claims (cells claimed by
concurrent workers), models (resolving and loading a base model), preflight (the output
folder), estimate / memory / model_sizes (costs before anything runs), task_show, cli.
"""
