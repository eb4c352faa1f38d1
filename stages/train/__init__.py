"""The trainer stage: its data, steps, checkpoints, previews, its data-parallel group and its lock."""
