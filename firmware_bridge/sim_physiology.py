"""A simulated wristband wearer: physiology coupled through latent states, one second at a time.

``SimulatedWearer.step()`` returns the next second of every signal an Empatica-E4-like
wristband sends (``bvp`` 64 Hz, ``eda`` 4 Hz µS, ``temp`` 4 Hz °C, ``acc`` 32 Hz x/y/z in g,
optionally ``hr`` and ``ibi``) as ``monitor.wire.SampleBatch`` objects, plus the ground truth
of that second (``Latent``). Everything random comes from the injected
``numpy.random.Generator``; the unit of generation is one second, so the output for a seed is
identical whether a caller asks for 1, 7 or 3,600 seconds at a time.

The model (parameters per wearer in ``sim_scenario.PROFILE_DEFAULTS``; reasons and sources in
``docs/devices.md``, "Simulated wearers"):

* **Arousal** ``a`` in [0, 1]: an Ornstein-Uhlenbeck-like process pulled towards the intensity
  of the current anxiety episode (0 when calm) with an onset time constant of 20-50 s and an
  offset of 1-2.5 min. Slower followers of ``a`` drive the tonic skin conductance (60 s) and
  skin temperature (3 min).
* **Exercise** ``load`` in [0, 1] (walk 0.3, run 1.0; 30 s on, 45 s off), a slow "after-effect"
  ``epoc`` (4 min on, 10 min off: heart rate stays up after a run) and ``sweat`` (3 min on,
  15 min off), plus wrist movement at step frequency.
* **Heart**: a beat train. Each interval is ``60/HR`` plus respiratory sinus arrhythmia
  (breathing at 12-17 /min, faster when aroused or running), a 0.1 Hz Mayer wave and noise; the
  vagal part shrinks with arousal and exercise, so RMSSD falls as heart rate rises. ``HR`` =
  rest + 12-22 bpm x ``a`` + 75-90 bpm x (0.85 ``load`` + 0.15 ``epoc``) + slow drift.
* **BVP**: a two-wave pulse (systolic and diastolic Gaussians, the shape ``nk.ppg_simulate``
  interpolates) stretched over each beat, amplitude lower under arousal (vasoconstriction),
  modulated by breathing, plus noise and, as a fault, motion artifacts coupled to the wrist's
  acceleration.
* **EDA**: tonic level (rest + 0.6-1.4 µS x slow ``a`` + sweating + drift) plus SCRs as Bateman
  functions (time constants 0.75 s rising, 2-4 s recovering, as ``nk.eda_simulate``: peak
  1.2-1.5 s after onset, half recovered 2.2-3.6 s after it) arriving as a Poisson process
  at 1-2.5 /min at rest and 5-9 /min more at full arousal, with lognormal amplitudes.
* **TEMP**: wrist skin temperature, 0.25-0.5 °C lower at full (slow) arousal, warmer after a run,
  drift; quantised to 0.02 °C like the E4.
* **ACC**: gravity on a slowly wandering orientation, micro-movement, hand and arm gestures
  (6-12 /min, calibrated on the seated rest phases of Stress-Predict; more when aroused for some
  wearers), step-frequency oscillation of the magnitude when walking (SD 0.15-0.25 g) or
  running (0.3-0.5 g); quantised to 1/64 g and saturating at -2/+1.98 g like the E4.
* **Faults** (from the kind's ``faults``): PPG motion artifacts; contact loss (a loose or
  removed band: EDA near 0 µS, BVP without a pulse, skin temperature reading the cooler
  surroundings, no ``hr``/``ibi``); dropped batches (their ``seq`` numbers are skipped);
  timestamp jitter; a device clock offset and drift. The device's ``ibi`` and ``hr`` come from
  the beats whose interval it could measure, as an E4's do: a beat whose interval overlaps a
  second of contact loss, or of a motion artifact larger than half the pulse (peak to peak),
  is not sent.

Example
-------
>>> from firmware_bridge.sim_scenario import load_scenario
>>> w = SimulatedWearer("sim-01", load_scenario("demo").kinds["calm"], np.random.default_rng(1),
...                     start_unix=1_700_000_000.0)
>>> second = w.step()
>>> [(b.signal, len(b.values)) for b in second.batches]
[('acc', 32), ('bvp', 64), ('eda', 4), ('temp', 4)]
>>> 50 < second.latent.hr_bpm < 90
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from monitor.wire import SampleBatch

from firmware_bridge.sim_scenario import FAULT_DEFAULTS, PROFILE_DEFAULTS, WearerKind

SAMPLING_RATE_HZ = {"acc": 32.0, "bvp": 64.0, "eda": 4.0, "temp": 4.0}
SIGNAL_ORDER = ("acc", "bvp", "eda", "hr", "ibi", "temp")  # batches of a second, in this order
ACC_RESOLUTION_G = 1.0 / 64.0  # Empatica E4
# the E4's 8-bit range: -128..127 counts of 1/64 g (its ACC.csv saturates there, e.g. Stress-Predict S02)
ACC_RANGE_G = (-128 * ACC_RESOLUTION_G, 127 * ACC_RESOLUTION_G)
TEMP_RESOLUTION_C = 0.02  # Empatica E4
# Off the skin the E4's infrared thermometer reads the cooler surroundings: Stress-Predict S02's
# band came off at 3561 s and TEMP fell from 35.25 to 30.35-30.67 °C within 2 s. Drawn per
# contact loss in this range (°C below the skin's temperature).
OFF_SKIN_TEMP_DROP_C = (3.0, 6.0)
# A second whose PPG motion artifact spans more than this share of the pulse's height (peak to
# peak) hides the beats in it from the device: the E4 leaves such beats out of its IBI.
ARTIFACT_HIDES_BEATS = 0.5

# Exercise episodes: exercise load and whether the wrist moves like walking or running.
LOAD_OF = {"walk": 0.3, "run": 1.0}

# Time constants (s) of the latent followers: (rising, falling)
TAU_LOAD_S = (30.0, 45.0)
TAU_EPOC_S = (240.0, 600.0)
TAU_SWEAT_S = (180.0, 900.0)
TAU_SCL_S = 60.0  # tonic EDA follows arousal
TAU_TEMP_S = 180.0  # skin temperature follows arousal
TAU_MOVE_S = 2.0  # movement amplitude and cadence settle within seconds


def _pulse_template(n: int = 512) -> tuple[np.ndarray, np.ndarray, float]:
    """One PPG pulse over a beat (phase 0..1): systolic and diastolic waves, zero at both ends.

    Returns (phase grid, values with peak 1 and mean 0, phase of the systolic peak).
    """
    x = np.linspace(0.0, 1.0, n)
    # the upstroke is steeper than the fall: a narrower Gaussian before the peak
    sd = np.where(x < 0.2, 0.06, 0.1)
    y = np.exp(-0.5 * ((x - 0.2) / sd) ** 2) + 0.45 * np.exp(-0.5 * ((x - 0.5) / 0.1) ** 2)
    y -= y[0] + (y[-1] - y[0]) * x  # start and end at the same level: no step between beats
    y /= y.max()
    return x, y - y.mean(), float(x[np.argmax(y)])


_PULSE_X, _PULSE_Y, PULSE_PEAK_PHASE = _pulse_template()


def _bateman_peak(rise_s: float, decay_s: float) -> float:
    u = math.log(decay_s / rise_s) * rise_s * decay_s / (decay_s - rise_s)
    return math.exp(-u / decay_s) - math.exp(-u / rise_s)


SCR_RISE_S = 0.75

# micro-movement of a resting arm: AR(1) at 32 Hz, time constant 0.15 s, SD MICRO_SD_G per axis
MICRO_SD_G = 0.004
_MICRO_RHO = math.exp(-1.0 / (32.0 * 0.15))
_MICRO_B = np.array([MICRO_SD_G * math.sqrt(1.0 - _MICRO_RHO ** 2)])
_MICRO_A = np.array([1.0, -_MICRO_RHO])

# sample offsets within one second (s), per signal
_W4 = np.arange(4) / 4.0
_W32 = np.arange(32) / 32.0
_W64 = np.arange(64) / 64.0


@dataclass(frozen=True)
class Latent:
    """Ground truth of one simulated second (at its start; times in true unix seconds)."""

    t_s: float
    rel_s: float  # seconds since the run started
    arousal: float  # 0..1
    load: float  # exercise load 0..1
    moving_sd_g: float  # target per-second SD of |acc| from walking/running (g)
    hr_bpm: float  # heart rate without the beat-to-beat modulation
    scl_us: float  # tonic skin conductance (µS), without SCRs
    temp_c: float  # skin temperature without noise (°C)
    resp_hz: float  # breathing rate (Hz)
    contact: bool  # False while the band is off the skin (fault)
    dropped: bool  # True when this second's batches were lost (fault)
    ppg_artifact: bool  # True when movement buries the pulse and hides beats from hr/ibi (fault)


@dataclass(slots=True)
class FaultInterval:
    """A run of seconds with one fault (``kind``: ``contact_loss``, ``dropout`` or
    ``ppg_artifact``), from ``start_rel_s`` to ``end_rel_s`` (s since the start), e.g.
    ``FaultInterval("dropout", 120.0, 127.0)``: the batches of seconds 120-126 were lost."""

    kind: str
    start_rel_s: float
    end_rel_s: float


@dataclass(frozen=True)
class SimSecond:
    """What a simulated wearer produced in one second: the batches sent and the truth."""

    latent: Latent
    batches: list[SampleBatch]


@dataclass
class _State:
    arousal: float = 0.0
    a_scl: float = 0.0
    a_temp: float = 0.0
    load: float = 0.0
    epoc: float = 0.0
    sweat: float = 0.0
    move_sd: float = 0.0
    cadence_hz: float = 1.8
    hr_slow: float = 0.0  # drifts (bpm, µS, °C)
    hr_fast: float = 0.0
    scl_drift: float = 0.0
    temp_drift: float = 0.0
    resp_phase: float = 0.0
    step_phase: float = 0.0
    theta: float = 0.6  # wrist orientation: tilt of gravity from the z axis and its azimuth (rad)
    psi: float = 0.3


def _follow(x: float, target: float, taus: tuple[float, float]) -> float:
    """One second of a first-order lag towards ``target`` (rising and falling time constants)."""
    tau = taus[0] if target > x else taus[1]
    return target + (x - target) * math.exp(-1.0 / tau)


def ou_noise(rng: np.random.Generator, n: int, tau_steps: float) -> np.ndarray:
    """``n`` steps of unit-variance AR(1) noise (a sampled Ornstein-Uhlenbeck process) with time
    constant ``tau_steps`` (in steps), starting at 0. Used by the null simulation of the score
    (``bench/null_trigger_rate.py``) and its tests.

    >>> x = ou_noise(np.random.default_rng(0), 200_000, tau_steps=60.0)
    >>> round(float(x.std()), 1), round(float(np.corrcoef(x[:-60], x[60:])[0, 1]), 1)  # e^-1 = 0.37
    (1.0, 0.4)
    """
    a = math.exp(-1.0 / tau_steps)
    e = rng.standard_normal(n) * math.sqrt(1.0 - a * a)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = a * x[i - 1] + e[i]
    return x


def _ou(x: float, sd: float, tau_s: float, z: float) -> float:
    """One second of a zero-mean Ornstein-Uhlenbeck process with stationary SD ``sd``."""
    rho = math.exp(-1.0 / tau_s)
    return x * rho + sd * math.sqrt(1.0 - rho * rho) * z


class SimulatedWearer:
    """One simulated wristband wearer of a scenario kind, generated one second at a time.

    Parameters
    ----------
    wearer_id : str
        The wearer id (``[a-z0-9_-]``), used by the caller in topics.
    kind : WearerKind
        Timeline of episodes, physiology ranges, faults and signals (``sim_scenario``).
    rng : numpy.random.Generator
        The only source of randomness; the same seed gives the same wearer, bit for bit.
    start_unix : float
        True time of the first sample (unix s). The device's timestamps add the kind's clock
        offset and drift.

    ``fault_intervals`` lists the faults of the seconds generated so far (``FaultInterval``,
    in order of start), for the ground truth.
    """

    def __init__(self, wearer_id: str, kind: WearerKind, rng: np.random.Generator, start_unix: float):
        self.wearer_id = wearer_id
        self.kind = kind
        self.start_unix = float(start_unix)
        (self._rng_profile, self._rng_state, self._rng_heart, self._rng_eda, self._rng_temp,
         self._rng_acc, self._rng_faults) = rng.spawn(7)
        self.profile = _draw_profile(self._rng_profile, kind.profile)
        self.faults = dict(FAULT_DEFAULTS)
        self.faults.update(kind.faults)
        offset = self.faults["clock_offset_s"]
        if isinstance(offset, tuple):
            offset = offset[0] + (offset[1] - offset[0]) * float(self._rng_faults.uniform())
        self.clock_offset_s = float(offset)
        self.signals = tuple(s for s in SIGNAL_ORDER if s in kind.signals)
        p = self.profile
        self._k = 0  # seconds generated
        self._s = _State(resp_phase=float(self._rng_state.uniform(0, 2 * np.pi)),
                         theta=0.6 + 0.3 * float(self._rng_state.uniform(-1, 1)))
        self._seq = {s: 0 for s in self.signals}
        first_rr = 60.0 / p["hr_rest_bpm"]
        self._onsets: list[float] = [-float(self._rng_heart.uniform(0.0, first_rr))]
        self._last_peak: float | None = None
        self._recent_ibi: list[float] = []  # the last intervals (ms), for the 1 Hz heart rate
        self._mayer_phase = float(self._rng_heart.uniform(0, 2 * np.pi))
        self._scr_t = np.zeros(0)  # onsets (s since start) and amplitudes (µS) of live SCRs
        self._scr_amp = np.zeros(0)
        self._scr_norm = 1.0 / _bateman_peak(SCR_RISE_S, p["scr_decay_s"])
        self._gestures: list[tuple] = []  # live gestures: start, duration, amplitude (g), hz, phases, axis
        self._micro_zi = np.zeros((1, 3))  # memory of the micro-movement filter
        self._dropout_until = -1.0
        self._contact_lost_until = -1.0
        self._off_skin_drop_c = 0.0
        self._unmeasured_s: list[float] = []  # recent seconds whose beat intervals the device cannot measure
        self.fault_intervals: list[FaultInterval] = []  # every fault so far, in order of start
        self._last_fault: dict[str, FaultInterval] = {}

    # -- public ------------------------------------------------------------------------------
    @property
    def seconds(self) -> int:
        """Seconds generated so far."""
        return self._k

    def device_time(self, rel_s: float | np.ndarray):
        """The device's timestamp (unix s) of a moment ``rel_s`` seconds after the start."""
        return self.start_unix + rel_s + self.clock_offset_s + self.faults["clock_drift_ppm"] * 1e-6 * rel_s

    def step(self) -> SimSecond:
        """Generate the next second of every signal."""
        k = float(self._k)
        s = self._s
        arousal_target, load_target, move = self._targets(k)
        hr0, vagal0, resp0 = self._heart_drive(s)
        phase0 = s.resp_phase
        step_phase0, cadence0, move_sd0 = s.step_phase, s.cadence_hz, s.move_sd
        theta0, psi0 = s.theta, s.psi
        scl0 = self._scl(s)
        temp0 = self._temp(s)
        latent_args = (s.arousal, s.load, s.move_sd, hr0, scl0, temp0, resp0)
        self._advance(arousal_target, load_target, move, resp0)
        hr1, vagal1, _ = self._heart_drive(s)

        dropped, contact = self._faults_of_second(k)
        acc = self._acc(k, theta0, psi0, step_phase0, cadence0, move_sd0)
        out: dict[str, np.ndarray] = {}  # samples of the regular signals
        artifact = self._ppg_artifact(acc)
        pulse_height = self.profile["bvp_amplitude"] * (1.0 - 0.3 * s.arousal)  # lower under arousal (vasoconstriction)
        artifact_hides = artifact is not None and float(np.ptp(artifact)) > ARTIFACT_HIDES_BEATS * pulse_height
        if self._unmeasured_s and self._unmeasured_s[0] <= k - 3.0:
            self._unmeasured_s = [x for x in self._unmeasured_s if x > k - 3.0]
        if artifact_hides or not contact:
            self._unmeasured_s.append(k)
        peaks_t, peaks_ibi = self._beats(k, hr0, hr1, vagal0, vagal1, phase0, resp0)
        jitter = self._rng_faults.standard_normal(len(self.signals)).tolist()
        if "bvp" in self.signals:
            out["bvp"] = self._bvp(k, phase0, resp0, pulse_height, artifact, contact)
        if "eda" in self.signals:
            out["eda"] = self._eda(k, scl0, self._scl(s), contact)
        if "temp" in self.signals:
            out["temp"] = self._temp_samples(temp0, self._temp(s), contact)
        if "acc" in self.signals:
            out["acc"] = np.clip(np.round(acc / ACC_RESOLUTION_G) * ACC_RESOLUTION_G, *ACC_RANGE_G)
        self._k += 1
        batches = []
        jitter_sd = self.faults["jitter_s"]
        for j, signal in enumerate(self.signals):
            err = jitter_sd * min(3.0, max(-3.0, jitter[j]))
            seq = self._seq[signal]
            self._seq[signal] += 1
            if signal in ("hr", "ibi"):
                if not len(peaks_t):
                    self._seq[signal] -= 1  # nothing to send: no batch, no sequence number used
                    continue
                if signal == "ibi":
                    t, values = peaks_t, peaks_ibi
                else:  # E4-like heart rate: one value per second from the recent intervals
                    t, values = peaks_t[-1:], np.array([60000.0 / np.mean(self._recent_ibi[-5:])])
                batch = SampleBatch(signal, seq, values, t=self.device_time(t) + err)
            else:
                batch = SampleBatch(signal, seq, out[signal], t0=float(self.device_time(k)) + err,
                                    fs=SAMPLING_RATE_HZ[signal])
            if not dropped:
                batches.append(batch)
        latent = Latent(self.start_unix + k, k, *latent_args, contact=contact, dropped=dropped,
                        ppg_artifact=artifact_hides)
        if dropped or artifact_hides or not contact:
            for fault, on in (("contact_loss", not contact), ("dropout", dropped), ("ppg_artifact", artifact_hides)):
                if on:
                    self._note_fault(fault, k)
        return SimSecond(latent, batches)

    def take(self, seconds: int) -> list[SimSecond]:
        """The next ``seconds`` seconds."""
        return [self.step() for _ in range(int(seconds))]

    def batches(self, seconds: int) -> list[SampleBatch]:
        """The batches of the next ``seconds`` seconds, in the order a device sends them."""
        return [b for sec in self.take(seconds) for b in sec.batches]

    def _note_fault(self, kind: str, k: float) -> None:
        """Second ``k`` has fault ``kind``: extend its interval that ended at ``k`` or start one."""
        last = self._last_fault.get(kind)
        if last is not None and last.end_rel_s == k:
            last.end_rel_s = k + 1.0
        else:
            self._last_fault[kind] = last = FaultInterval(kind, k, k + 1.0)
            self.fault_intervals.append(last)

    # -- latent dynamics -----------------------------------------------------------------------
    def _targets(self, k: float):
        arousal, load, move = 0.0, 0.0, None
        for e in self.kind.episodes:
            if e.active(k):
                if e.kind == "anxiety":
                    arousal = max(arousal, e.intensity)
                else:
                    load = max(load, LOAD_OF[e.kind] * e.intensity)
                    move = (self.profile[f"{e.kind}_cadence_hz"], self.profile[f"{e.kind}_acc_sd_g"] * e.intensity)
        return arousal, load, move

    def _heart_drive(self, s: _State) -> tuple[float, float, float]:
        """(heart rate bpm, vagal factor 0..1, breathing rate Hz) of the latent state."""
        p = self.profile
        hr = (p["hr_rest_bpm"] + p["hr_anxiety_bpm"] * s.arousal
              + p["hr_exercise_bpm"] * (0.85 * s.load + 0.15 * s.epoc) + s.hr_slow + s.hr_fast)
        vagal = (1.0 - 0.65 * s.arousal) * (1.0 - 0.8 * s.load) * (1.0 - 0.4 * s.epoc)
        resp = p["resp_rest_hz"] + 0.08 * s.arousal + 0.25 * s.load
        return hr, vagal, resp

    def _scl(self, s: _State) -> float:
        p = self.profile
        return p["scl_rest_us"] + s.scl_drift + p["scl_anxiety_us"] * s.a_scl + p["scl_sweat_us"] * s.sweat

    def _temp(self, s: _State) -> float:
        p = self.profile
        return p["temp_rest_c"] + s.temp_drift - p["temp_anxiety_c"] * s.a_temp + 0.5 * s.epoc - 0.2 * s.load

    def _advance(self, arousal_target: float, load_target: float, move, resp_hz: float) -> None:
        """Move the latent state from the start of this second to the start of the next."""
        s, p = self._s, self.profile
        z = self._rng_state.standard_normal(9).tolist()
        tau_a = p["arousal_onset_s"] if arousal_target > s.arousal else p["arousal_offset_s"]
        s.arousal = min(1.0, max(0.0, _ou(s.arousal - arousal_target, 0.03, tau_a, z[0]) + arousal_target))
        s.a_scl = _follow(s.a_scl, s.arousal, (TAU_SCL_S, TAU_SCL_S))
        s.a_temp = _follow(s.a_temp, s.arousal, (TAU_TEMP_S, TAU_TEMP_S))
        s.load = _follow(s.load, load_target, TAU_LOAD_S)
        s.epoc = _follow(s.epoc, s.load, TAU_EPOC_S)
        s.sweat = _follow(s.sweat, s.load, TAU_SWEAT_S)
        cadence, sd = move if move is not None else (s.cadence_hz, 0.0)
        s.move_sd = _follow(s.move_sd, sd, (TAU_MOVE_S, TAU_MOVE_S))
        s.cadence_hz = _follow(s.cadence_hz, cadence * (1.0 + 0.02 * z[1]), (TAU_MOVE_S, TAU_MOVE_S))
        s.hr_slow = _ou(s.hr_slow, 1.5, 600.0, z[2])
        s.hr_fast = _ou(s.hr_fast, 1.0, 10.0, z[3])
        s.scl_drift = _ou(s.scl_drift, 0.1, 900.0, z[4])
        s.temp_drift = _ou(s.temp_drift, 0.15, 1200.0, z[5])
        s.resp_phase = (s.resp_phase + 2 * np.pi * resp_hz * (1.0 + 0.05 * z[6])) % (2 * np.pi)
        s.step_phase = (s.step_phase + 2 * np.pi * s.cadence_hz) % (4 * np.pi)
        s.theta = min(1.5, max(0.05, 0.6 + _ou(s.theta - 0.6, 0.15, 120.0, z[7])))
        s.psi = _ou(s.psi, 0.3, 120.0, z[8])

    # -- signals -------------------------------------------------------------------------------
    def _beats(self, k, hr0, hr1, vagal0, vagal1, phase0, resp0):
        """Extend the beat train past ``k + 1``; returns the systolic peaks in [k, k+1) whose
        interval the device measured (none that overlaps a second in ``_unmeasured_s``) and
        those intervals (ms)."""
        p = self.profile
        onsets = self._onsets
        rng = self._rng_heart
        rsa, noise = p["rsa_ms"] / 1000.0, p["rr_noise_ms"] / 1000.0
        while onsets[-1] <= k + 1.0:
            tn = onsets[-1]
            u = min(1.0, max(0.0, tn - k))
            hr = hr0 + (hr1 - hr0) * u
            v = vagal0 + (vagal1 - vagal0) * u
            rr = (60.0 / hr + rsa * v * math.sin(phase0 + 2 * math.pi * resp0 * u)
                  + 0.012 * (0.4 + 0.6 * v) * math.sin(2 * math.pi * 0.1 * tn + self._mayer_phase)
                  + noise * (0.3 + 0.7 * v) * float(rng.standard_normal()))
            onsets.append(tn + min(2.0, max(0.27, rr)))
        while len(onsets) > 2 and onsets[1] < k - 2.0:
            onsets.pop(0)
        # systolic peaks of the beats whose peak falls in [k, k+1)
        on = np.asarray(onsets)
        peaks = on[:-1] + PULSE_PEAK_PHASE * np.diff(on)
        inside = (peaks >= k) & (peaks < k + 1.0)
        peaks_t = peaks[inside]
        sent_t, ibi = [], []
        for t in peaks_t.tolist():
            last = self._last_peak
            self._last_peak = t
            if last is None:  # the very first peak has no interval yet
                continue
            if not any(math.floor(last) <= x <= t for x in self._unmeasured_s):
                sent_t.append(t)
                ibi.append((t - last) * 1000.0)
        self._recent_ibi = (self._recent_ibi + ibi)[-5:]
        return np.asarray(sent_t), np.asarray(ibi)

    def _bvp(self, k, phase0, resp0, amp, artifact, contact) -> np.ndarray:
        """64 samples of PPG: pulses of height ``amp`` (peak to peak) over the beats, breathing,
        noise and the motion ``artifact``."""
        p = self.profile
        t = k + _W64
        on = np.asarray(self._onsets)
        j = np.searchsorted(on, t, side="right") - 1
        phase = (t - on[j]) / (on[j + 1] - on[j])
        resp = np.sin(phase0 + 2 * np.pi * resp0 * (t - k))
        x = amp * (1.0 + 0.08 * resp) * np.interp(phase, _PULSE_X, _PULSE_Y) + 0.1 * amp * resp
        x += 0.015 * amp * self._rng_heart.standard_normal(64)
        if not contact:  # the optical sensor off the skin: no pulse, only sensor and ambient noise
            x = p["bvp_amplitude"] * self._rng_faults.standard_normal(64)
        return x if artifact is None else x + artifact

    def _ppg_artifact(self, acc) -> np.ndarray | None:
        """The 64 samples that the wrist's movement adds to this second's PPG (None without the
        ``ppg_motion_artifacts`` fault)."""
        if not self.faults["ppg_motion_artifacts"]:
            return None
        magnitude = np.sqrt(np.einsum("ij,ij->i", acc, acc))
        return 3.0 * self.profile["bvp_amplitude"] * np.repeat(magnitude - 1.0, 2)

    def _eda(self, k, scl0, scl1, contact) -> np.ndarray:
        p, s = self.profile, self._s
        rng = self._rng_eda
        rate_per_s = (p["scr_rest_per_min"] + p["scr_anxiety_per_min"] * s.arousal + 1.5 * s.sweat) / 60.0
        n = int(rng.poisson(rate_per_s))
        onsets = k + rng.uniform(0.0, 1.0, n)
        amps = p["scr_amplitude_us"] * (1.0 + 0.8 * s.arousal) * np.exp(0.5 * rng.standard_normal(n))
        noise = rng.standard_normal(4)
        keep = self._scr_t > k - 12.0 * p["scr_decay_s"]
        self._scr_t = np.concatenate([self._scr_t[keep], onsets])
        self._scr_amp = np.concatenate([self._scr_amp[keep], amps])
        t = k + _W4
        u = np.maximum(t[:, None] - self._scr_t[None, :], 0.0)
        phasic = (np.exp(-u / p["scr_decay_s"]) - np.exp(-u / SCR_RISE_S)) @ self._scr_amp * self._scr_norm
        x = scl0 + (scl1 - scl0) * _W4 + phasic + 0.002 * noise
        if not contact:
            x = 0.01 + 0.005 * np.abs(noise)  # electrodes off the skin: near 0 µS
        return np.maximum(x, 0.0)

    def _temp_samples(self, temp0, temp1, contact) -> np.ndarray:
        x = temp0 + (temp1 - temp0) * _W4 + 0.005 * self._rng_temp.standard_normal(4)
        if not contact:
            x -= self._off_skin_drop_c
        return np.round(x / TEMP_RESOLUTION_C) * TEMP_RESOLUTION_C

    def _acc(self, k, theta0, psi0, step_phase0, cadence0, move_sd0) -> np.ndarray:
        s, p = self._s, self.profile
        rng = self._rng_acc
        w = _W32
        theta = theta0 + (s.theta - theta0) * w
        psi = psi0 + (s.psi - psi0) * w
        st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(psi), np.cos(psi)
        g = np.stack([st * cp, st * sp, ct], axis=1)  # gravity direction, unit
        e = np.stack([ct * cp, ct * sp, -st], axis=1)  # a direction across it (arm swing)
        acc = g.copy()
        if move_sd0 > 0.005:
            phase = step_phase0 + 2 * np.pi * cadence0 * w
            a1 = move_sd0 * math.sqrt(2.0 / 1.16)  # two harmonics with SD move_sd0 together
            vertical = a1 * np.sin(phase) + 0.4 * a1 * np.sin(2 * phase + 0.7)
            acc += g * vertical[:, None] + e * (0.5 * a1 * np.sin(0.5 * phase))[:, None]
        # hand and arm gestures (typing, reaching, touching the face; more often when aroused for
        # some people): four random 1-6 Hz components under a smooth envelope, along a random
        # direction, lognormal amplitude; none while walking or running
        draws = rng.uniform(size=4)
        rate_per_s = p["gesture_per_min"] * (1.0 + p["gesture_anxiety_gain"] * s.arousal) / 60.0
        if draws[0] < rate_per_s and move_sd0 < 0.05:
            axis = rng.standard_normal(3)
            hz = rng.uniform(1.0, 6.0, 4)
            phases = rng.uniform(0.0, 2 * np.pi, 4)
            amp = p["gesture_g"] * math.exp(0.9 * float(rng.standard_normal()))
            self._gestures.append((k + draws[1], 1.0 + 3.0 * draws[2], amp, hz, phases, axis / np.linalg.norm(axis)))
        t = k + w
        for start, dur, amp, hz, phases, axis in self._gestures:
            u = (t - start) / dur
            on = (u >= 0) & (u < 1)
            if on.any():
                carrier = np.sin(2 * np.pi * hz[None, :] * (t - start)[:, None] + phases[None, :]).sum(axis=1) / 2.0
                wave = amp * carrier * np.sin(np.pi * np.clip(u, 0, 1)) ** 2 * on
                acc += wave[:, None] * axis[None, :]
        self._gestures = [f for f in self._gestures if f[0] + f[1] > k + 1.0]
        # the arm is never perfectly still: slow random micro-movement (AR(1), tau 0.15 s)
        micro, self._micro_zi = sps.lfilter(_MICRO_B, _MICRO_A, rng.standard_normal((32, 3)), axis=0, zi=self._micro_zi)
        acc += micro
        return acc + 0.003 * rng.standard_normal((32, 3))

    def _faults_of_second(self, k: float) -> tuple[bool, bool]:
        """(batches of this second lost, band on the skin)."""
        f = self.faults
        u = self._rng_faults.uniform(size=5)
        if k >= self._dropout_until and u[0] < f["dropouts_per_hour"] / 3600.0:
            lo, hi = f["dropout_s"]
            self._dropout_until = k + round(lo + (hi - lo) * u[1])
        if k >= self._contact_lost_until and u[2] < f["contact_loss_per_hour"] / 3600.0:
            lo, hi = f["contact_loss_s"]
            self._contact_lost_until = k + round(lo + (hi - lo) * u[3])
            lo, hi = OFF_SKIN_TEMP_DROP_C
            self._off_skin_drop_c = lo + (hi - lo) * u[4]
        return k < self._dropout_until, not (k < self._contact_lost_until)


def _draw_profile(self_rng: np.random.Generator, ranges: dict) -> dict:
    """One wearer's physiology: a uniform draw for every key (fixed order), mapped to its range."""
    keys = sorted(PROFILE_DEFAULTS)
    u = self_rng.uniform(size=len(keys))  # always every key, so fixing one never shifts the others
    out = {}
    for key, x in zip(keys, u.tolist()):
        lo, hi = ranges.get(key, PROFILE_DEFAULTS[key])
        out[key] = lo + (hi - lo) * x
    return out
