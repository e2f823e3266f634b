"""Kubernetes grammars and identities: quantities, labels, manifests, JSON values."""
