"""Training and evaluation: losses, schedule, the trainer loop and checkpoints."""
