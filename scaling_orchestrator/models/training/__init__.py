"""The training loop and what it needs: the recipe (TrainConfig, LR schedule), atomic
checkpoints, data-parallel helpers."""
