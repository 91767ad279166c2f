"""Shared training set-up of every family: train(cfg), callbacks, checkpointing and resume, optimiser, epoch metrics."""
