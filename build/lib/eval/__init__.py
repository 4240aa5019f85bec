"""Evaluation: prompts (k-shot, CoT), the LM interface (generate, loglikelihood), answer
extraction, the code sandbox and metrics."""
