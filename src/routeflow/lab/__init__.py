"""lab: builds and checks emulated networks (Mininet, OVS userspace datapath, FRR)."""
