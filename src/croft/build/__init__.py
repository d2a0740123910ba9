"""The build: rendering each machine's layers into a tree and a manifest, incrementally."""
