"""Fine-tuning: an accelerate training loop, LoRA or full, on answer / CoT / code targets."""
