"""SNMP: engines (pysnmp, ezsnmp), fetching, profiles (YAML, in ../profiles) and translation."""
