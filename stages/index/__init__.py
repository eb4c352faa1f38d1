"""The index stage, the writer of videos, segments and patches, and how it writes results."""
