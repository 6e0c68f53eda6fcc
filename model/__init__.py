"""Data loading, training and the artifact contract of the Iris classifier."""
