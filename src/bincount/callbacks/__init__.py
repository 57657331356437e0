"""Callbacks: plain progress lines, training-health rules, profiling summaries, checkpoints."""
