"""What a process does to itself: its tie to its parent, its BLAS threads."""
