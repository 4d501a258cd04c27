"""Helpers for training small image classifiers; each file also works copied alone into a later assignment."""
