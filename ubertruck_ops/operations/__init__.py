"""Procedures flows share, and the frame every flow runs in. They call tasks and core; no flow."""
