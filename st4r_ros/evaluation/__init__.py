"""Metrics and benchmark runners: time-agnostic referring mIoU (referring.py)."""
