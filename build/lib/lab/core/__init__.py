"""The leaf of the lab: what every other package shares, importing nothing else of it.

example (Example and the split roles), recipe (the recipe schema), errors, io (atomic
writes), prompts (the one prompt template), fairness (the labelled-data rules), compute
(FLOP accounting), precision (bf16 / fp32), masks (explicit 4D attention masks).
"""
