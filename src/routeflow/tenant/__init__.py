"""Tenant networks: a Neutron-compatible API and a distributed router on every node."""
