"""Device protocols to MQTT: pure decoders, transports, simulated devices.

Nothing in this package knows about stress; it turns what devices send into the canonical
sample batches of ``monitor.wire`` and publishes them.

Pure (bytes or text in, values out, no I/O):

* ``ble_hrs``: Bluetooth Heart Rate Measurement (0x2A37) and Battery Level (0x2A19)
* ``emotibit``: EmotiBit packets (network and SD card) and the host handshake messages
* ``lines``: the anxmon line protocol for DIY devices
* ``devices``: device definitions (``configs/devices/*.toml``), validated
* ``batcher``: samples to 1 s batches, counted time stamps, real-rate measurement
* ``clock``: a device's uptime clock mapped to unix time

I/O:

* ``outbox``: the SQLite outbox (a batch leaves only on PUBACK; sequence numbers persist)
* ``publisher``: paho-mqtt QoS 1 publisher, availability with last will (broker URLs and the
  paho client: ``monitor.mqtt_client``)
* ``bridge``: one device of one wearer: batches into the outbox, availability, status
* ``transports``: stdin/serial lines and EmotiBit over WiFi; ``ble``: BLE through bleak
* ``cli``: ``anxmon bridge ...`` (``add_bridge_parser``); ``testing``: fake strap and monitor
"""
