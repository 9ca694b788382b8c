"""Synthetic data: chest-radiograph phantoms with labelled findings."""
