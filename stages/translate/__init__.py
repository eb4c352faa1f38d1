"""Applying a trained generator: to image files, and to the people in a video (tracking, paste, smoothing)."""
