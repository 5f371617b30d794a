"""Metrics, protocols, perturbations and reports."""
