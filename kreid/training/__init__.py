"""Training: schedules, the objective (heads + weighted loss terms), the trainer, distribution."""
