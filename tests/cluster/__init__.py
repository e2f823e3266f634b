"""The webhook against a real kube-apiserver and etcd (issue 19)."""
