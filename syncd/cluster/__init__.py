"""Cluster mode (SPEC section 11): several ``syncd run`` nodes sharing a fleet through etcd."""
