"""Reachability: ICMP echo (unprivileged where the kernel allows it) and TCP connects."""
