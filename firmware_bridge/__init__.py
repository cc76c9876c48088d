"""Device protocols to MQTT: pure decoders, transports, simulated devices.

Nothing in this package knows about stress; it turns what devices send into the canonical
sample batches of ``monitor.wire`` and publishes them.
"""
