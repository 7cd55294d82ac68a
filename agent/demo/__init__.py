"""The demo site: a simulated district video network on loopback, and `vigil demo`.

- `site`: the district's plan (sites, devices, topology, models); writes config/demo/inventory.yaml.
- `snmprec`, `models`: .snmprec data generated per device from its model's template, with the
  structure of real device walks (the values are this project's own).
- `scenario`: the timeline of scripted events (a UPS on battery, a camera and a street cabinet
  dropping off the network, a lightning strike tripping an SPD) and how each is simulated.
- `generate`: writes the snmpsim data directory for an inventory.
- `responder`: runs snmpsim with one data file per loopback address.
- `run`: `vigil demo` itself: generate, start snmpsim, the agent and Prometheus, stop them.
"""
