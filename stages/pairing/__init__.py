"""The pairing stage and what it pairs with: the pose score, the persistent pose store per (domain, view), FAISS
candidates."""
