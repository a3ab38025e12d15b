"""Teach it your genres: labels, features, a trained head, and its evaluation."""
