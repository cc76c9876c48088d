"""Map a device's own clock (milliseconds since it booted) to unix seconds.

Many devices (EmotiBit, an ESP32 running ``millis()``) stamp samples with their uptime, not
with wall time. The gateway sees each packet arrive a little after it was stamped; the
smallest ``arrival - device_time`` over a recent window is the best estimate of the offset
(the packet with the least transit delay). The window lets the estimate follow a clock that
drifts, and a device time that jumps back (a reboot) restarts the estimate.

Example
-------
>>> c = DeviceClock()
>>> c.to_unix(1000.0, arrival_s=1_700_000_001.050)   # first packet: 50 ms transit assumed 0
1700000001.05
>>> c.to_unix(2000.0, arrival_s=1_700_000_002.020)   # a faster packet lowers the offset
1700000002.02
"""

from __future__ import annotations

from collections import deque


class DeviceClock:
    """Windowed-minimum offset between a device's ms clock and the gateway's unix clock.

    Parameters
    ----------
    window_s : float
        How far back (gateway seconds) packets count for the minimum.
    reboot_ms : float
        A device time this much lower than the last one means the device restarted.
    """

    def __init__(self, window_s: float = 60.0, reboot_ms: float = 1000.0):
        self.window_s = float(window_s)
        self.reboot_ms = float(reboot_ms)
        self._candidates: deque[tuple[float, float]] = deque()  # (arrival_s, offset_s), offsets increasing
        self._last_device_ms: float | None = None

    def reset(self) -> None:
        self._candidates.clear()
        self._last_device_ms = None

    @property
    def offset_s(self) -> float | None:
        """Current estimate of ``unix_s - device_ms / 1000``, or None before the first packet."""
        return self._candidates[0][1] if self._candidates else None

    def to_unix(self, device_ms: float, arrival_s: float) -> float:
        """Unix time of a device timestamp that arrived at ``arrival_s``."""
        if self._last_device_ms is not None and device_ms < self._last_device_ms - self.reboot_ms:
            self.reset()
        self._last_device_ms = device_ms
        candidate = arrival_s - device_ms / 1000.0
        q = self._candidates
        while q and q[-1][1] >= candidate:  # a monotonic deque keeps the window minimum at q[0]
            q.pop()
        q.append((arrival_s, candidate))
        while q[0][0] < arrival_s - self.window_s and len(q) > 1:
            q.popleft()
        return device_ms / 1000.0 + q[0][1]
