"""SNMP trap receiver (v1, v2c, v3) and the trap -> event mappings of the profiles."""
