"""The automatic layer: decorators, track(), the outcome rules, work carried to other processes."""
