"""Helpers the tests share: the service launcher, review builders, raw clients and the
Kubernetes API stand-in."""
