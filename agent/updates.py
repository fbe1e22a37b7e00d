# The update agent: the device side of a patch's journey after publication.
#
# Every loop tick (never blocking for long; long steps feed the watchdog):
#  - on a trial boot: run the health check (self-test, a few healthy loops,
#    the network: the update server answers OR the broker acknowledged a
#    record this boot); healthy -> confirm (floor rises); failing past the
#    deadline -> note why and reboot when the clinical gate allows, so the
#    loader rolls back;
#  - a finished install waiting for activation: activate and reboot when the
#    gate allows;
#  - every check_every_s: TUF refresh, pick the newest release for this model
#    and channel that is not recalled, and install it when the gate allows.
# Every step and every deferral is reported through `report(dict)`.
#
# Never condemn a good release (README, "Device update path"): a failure of
# the network or of a transfer (DownloadError, TransferError: bytes that are
# not the signed ones) is retried from a clean download with backoff
# (check_every_s, doubling per failure, at most RETRY_MAX_S) and reported as
# "download_interrupted"/"retry"/"check_failed" (out of memory: retried after
# OOM_RETRY_S, doubling, at most check_every_s); only the release's own fault
# (a refused or invalid signed manifest, a failed trial) refuses it, and a
# newer release this device will not take is reported as "refused", never as
# "up_to_date".
#
# The tick runs on the agent's event loop, so while it works nothing is
# published. With telemetry on (slice_ms set by the agent) it works in
# slices: past slice_ms the next busy call (at least every half second of a
# network wait, every chunk of an install) stops the step; what it did is
# kept on flash (accepted metadata, the install journal and blob) and the
# next tick, a second later, continues.
import gc

from agent import release_modules, selftest
from updater import bootstate
from updater.install import gate
from updater.install import policy
from updater.install.errors import InstallError, PackageError, TransferError
from updater.install.installer import Installer
from updater.install.manifest import parse_version
from updater.install.source import HttpSource
from board.compat import format_exception, ticks_ms, ticks_diff, ticks_add
from updater import tuf
from updater.tuf.errors import DownloadError, RepositoryError

TUF_DIR = "tuf"  # under /state: trusted metadata (root.json provisioned)
GATE_EVERY_MS = 1000  # how often a running download re-checks the pump
SLICE_MS = 2000  # longest an update step holds a publishing event loop
MAX_CHECK_SLICES = 5  # a refresh not done in this many slices: server too slow
MAX_INSTALL_SLICES = 600  # an install not done in this many slices: retried later
RETRY_MAX_S = 3600  # longest wait between two retries of a failed check/download
OOM_RETRY_S = 20  # first retry of a check that ran out of memory (doubling, at most check_every_s)


class InstallDeferred(RuntimeError):
    # Raised from the busy hook when the pump starts infusing (or alarms)
    # during a download: the install stops at once and resumes from its
    # journal when the gate allows. args[0]: the gate's reason.
    pass


class UpdatePaused(RuntimeError):
    # Raised from the busy hook when the tick's slice (SLICE_MS) is used up:
    # the step stops and the next tick continues it.
    pass


class UpdateAgent:
    def __init__(self, board, slot, trial, cfg, report):
        self.board = board
        self.slot = slot
        self.trial = trial
        self.cfg = cfg["update"]
        self.report = report
        self.mounts = board.mounts()
        info = bootstate.slot_info(self.mounts["slot_" + slot]) or {}
        self.version = info.get("version", "0.0.0")
        self.model = info.get("model", "unknown")
        self.counter = info.get("security_counter", 0)
        self.installer = Installer(self.mounts, self.model, progress=self._progress)
        self.window = None
        try:
            self.window = gate.parse_window(self.cfg.get("window"))
        except ValueError as e:
            self.report({"step": "config_error", "reason": str(e)})
        # Updates are off without an update URL or a trusted TUF root: say so
        # once per boot (a sealed report; status and posture: "updates": "off").
        self.off = None
        if not self.cfg.get("metadata_url"):
            self.off = "no update URL (update.metadata_url in config.json)"
        elif self.cfg["metadata_url"].startswith("https:") and not self.cfg.get("ca"):
            # The TLS client requires a verified server and the board has no
            # CA store: without update.ca no HTTPS check could ever succeed.
            self.off = "HTTPS update URL and no server certificate to trust (update.ca in config.json)"
        else:
            try:
                open(self.mounts["state"] + "/" + TUF_DIR + "/root.json").close()
            except OSError:
                self.off = "no trusted TUF root (/state/tuf/root.json)"
        if self.off:
            self.report({"step": "off", "reason": self.off, "version": self.version})
        self.healthy_loops = 0
        self.health_reason = None
        self.started_ms = ticks_ms()  # trial deadline counts this boot's uptime
        self.recalled_versions = set()
        self.refused = []
        # Called while an update step holds the loop: what must go on (sampling).
        self.busy_hooks = []
        # Callables, true when a peer other than the update server answered this
        # boot (the broker acknowledged a record): a trial is healthy on either.
        self.network_checks = []
        # Callables given the refreshed TUF updater on every check: other
        # signed per-model targets (the command policy, agent/security).
        self.target_hooks = []
        self._installing = False
        self._gate_ms = None
        self._slice_end = None
        # Longest a tick may hold the event loop (ms), None: no limit. The
        # agent sets SLICE_MS when the loop also publishes telemetry.
        self.slice_ms = None
        self.next_check = None
        self.failures = 0  # consecutive failed checks/downloads (backoff)
        self.oom_retries = 0  # consecutive checks that ran out of memory
        self.check_slices = 0
        self.pending = None  # an install continued over several ticks
        self.deferrals = 0
        self.tuf_info = None  # {"root": [version, expires], "targets", "snapshot", "timestamp": ...} after a refresh
        self.rejected = {}  # manifest hash -> reason: refused this boot for its own fault
        # Set by the agent from the provisioned identity: decides membership
        # in a staged rollout (policy.in_rollout); None waits for 100 %.
        self.device_id = None

    @property
    def recalled(self):
        # The running version is on the model's signed recall list.
        return self.version in self.recalled_versions

    # -- reporting -------------------------------------------------------------
    def _set(self, **kw):
        self.report(kw)

    def _busy(self):
        # Every half second of a network wait and every chunk of an install:
        # feed the watchdog, let sampling go on, keep the clinical gate watching
        # an install (an infusion stops it; it resumes later), end the slice.
        self.board.watchdog_feed()
        for hook in self.busy_hooks:
            hook()
        now_ms = ticks_ms()
        if self._installing:
            if self._gate_ms is None or ticks_diff(now_ms, self._gate_ms) >= GATE_EVERY_MS:
                self._gate_ms = now_ms
                why = gate.check(self.board.read_pump(), self.board.time(), None, True)
                if why:
                    raise InstallDeferred(why)
        if self._slice_end is not None and ticks_diff(now_ms, self._slice_end) >= 0:
            raise UpdatePaused()

    def _fetcher(self):
        from updater.tuf.fetcher import Fetcher

        # Connect timeout below the watchdog period: the TCP connect blocks.
        return Fetcher(connect_timeout=3, read_timeout=10, cafile=self._cafile(), tick=self._busy)

    def _cafile(self):
        ca = self.cfg.get("ca")
        return (self.mounts["state"] + "/" + ca) if ca else None

    def _progress(self, ev):
        # Called for every chunk of an install.
        if ev:
            self._set(**ev)
        self._busy()

    def _defer(self, what, reason, version=None):
        self.deferrals += 1
        self._set(step="deferred", action=what, reason=reason, version=version, deferrals=self.deferrals)

    def _every(self):
        return self.cfg.get("check_every_s") or 300

    def _failed(self, now, step, reason, version, **kw):
        # A failure of the network or of a transfer: say so, and retry with
        # backoff (check_every_s, doubling, at most RETRY_MAX_S).
        self.failures += 1
        wait = self._every() << min(self.failures - 1, 12)
        if wait > RETRY_MAX_S:
            wait = RETRY_MAX_S
        self.next_check = now + wait
        self._set(step=step, reason=reason, version=version, attempt=self.failures, retry_in_s=wait, **kw)

    def _out_of_memory(self, now, e):
        # The heap's state, not the release's or the network's fault: retry the
        # check soon (OOM_RETRY_S, doubling). The report names where it failed.
        self.oom_retries += 1
        self.check_slices = 0
        wait = min(self._every(), OOM_RETRY_S << min(self.oom_retries - 1, 8))
        if self.next_check is not None and self.next_check - now > wait:
            self.next_check = now + wait
        where = [ln.strip() for ln in format_exception(e).split("\n") if "File" in ln] or [None]
        self._set(step="error", reason="out of memory", version=self.version, retry_in_s=wait, where=where[-1])

    # -- the tick ----------------------------------------------------------------
    def tick(self, now):
        # Never let an update problem stop the agent: out of memory, a refused
        # install or bad repository data are reported; a later check retries.
        self._slice_end = None if self.slice_ms is None else ticks_add(ticks_ms(), self.slice_ms)
        try:
            self._tick(now)
        except UpdatePaused:
            pass  # a step outside a download or install: the next tick redoes it
        except MemoryError as e:
            gc.collect()
            self._out_of_memory(now, e)
        except (InstallError, RepositoryError) as e:
            self._set(step="error", reason=str(e), version=self.version)
        finally:
            self._slice_end = None

    def _tick(self, now):
        if self.trial:
            return self._trial_tick(now)
        j = self.installer.installed()
        if j is not None:
            self.pending = None
            return self._activation_tick(now, j)
        if self.pending is not None:
            return self._install(now)
        if not self.off and (self.next_check is None or now >= self.next_check):
            self.next_check = now + self._every()
            self.check_and_install(now)

    def _trial_tick(self, now):
        # Health check every tick; confirm after enough consecutive healthy
        # loops; past the deadline (this boot's uptime) without that, record
        # the last failure and reboot so the loader rolls back.
        st = bootstate.read_state(self.mounts["state"])
        trial = st.get("trial")
        if not trial:
            self.trial = False
            return
        r = selftest.run(self.board)
        if r is None:
            r = self._network_reason()
        if r is None:
            self.healthy_loops += 1
        else:
            self.healthy_loops = 0
            if r != self.health_reason:
                self._set(step="trial", version=self.version, healthy=False, reason=r)
            self.health_reason = r
        if self.healthy_loops >= self.cfg.get("health_loops", 3):
            v = self.installer.confirm(now)
            self.trial = False
            self.counter = max(self.counter, trial.get("counter", 0))
            self._set(step="confirmed", version=v)
            print("update: %s confirmed" % v)  # on the UART (renode/tests/update.robot)
            return
        uptime_s = ticks_diff(ticks_ms(), self.started_ms) // 1000
        if uptime_s >= self.cfg.get("trial_deadline_s", 300):
            reason = self.health_reason or "not healthy before the deadline"
            # Reboot into the loader's rollback - never during an infusion.
            why = gate.check(self.board.read_pump(), now, None, urgent=True)
            if why:
                self._defer("rollback reboot", why, self.version)
                return
            trial["health"] = reason
            bootstate.write_state(self.mounts["state"], st)
            self._set(step="rolling_back", version=self.version, reason=reason)
            print("update: trial of %s failed (%s): rolling back" % (self.version, reason))
            self.board.reset("trial failed: " + reason)

    def _network_reason(self):
        # None when the new firmware's networking works: the broker acknowledged
        # a record this boot, or the update server gave any HTTP answer (a 503
        # still proves DNS, TCP, TLS, HTTP). Else why not. Without a configured
        # update server and peer there is nothing to check.
        for ok in self.network_checks:
            if ok():
                return None
        url = self.cfg.get("metadata_url")
        if not url:
            return "no peer reached" if self.network_checks else None
        try:
            self._fetcher().fetch_bytes(url.rstrip("/") + "/timestamp.json", 16384)
        except DownloadError as e:
            if e.status is not None:
                return None
            return "network: neither the update server nor the broker reached (%s)" % e
        except UpdatePaused:
            return "network: the update server is too slow and the broker not reached"
        return None

    def _activation_tick(self, now, j):
        # j: the journal of a finished install waiting for activation.
        if j.get("version") in self.recalled_versions:
            # Recalled while it waited for the gate: never activate it.
            self.installer.abandon(j)
            self._set(step="rejected", version=j.get("version"), reason="recalled before activation")
            return
        why = gate.check(self.board.read_pump(), now, self.window, j.get("urgent", False))
        if why:
            self._defer("activate", why, j.get("version"))
            return
        self.installer.activate(now, self.cfg.get("trial_deadline_s", 300), self.cfg.get("trial_max_attempts", 3))
        self._set(step="activated", version=j.get("version"))
        self.board.reset("update to %s" % j.get("version"))

    # -- checking and installing -----------------------------------------------------
    def _tuf(self, now):
        from updater.tuf.updater import Updater

        d = self.mounts["state"] + "/" + TUF_DIR
        return Updater(d, self.cfg["metadata_url"], target_base_url=self.cfg.get("targets_url"), now=now,
                       fetcher=self._fetcher())

    def find_release(self, up):
        # (targetinfo, custom) of the newest installable release, or None.
        prefix = self.model + "/"
        recalled = set()
        info = up.get_targetinfo(prefix + "recalls.json")
        if info is not None:
            from updater.tuf.fetcher import BytesSink
            import json

            sink = BytesSink()
            up.stream_target(info, sink)
            for r in json.loads(bytes(sink.buf)).get("recalled", []):
                recalled.add(r.get("version"))
        self.recalled_versions = recalled
        for hook in self.target_hooks:
            hook(up)
        st = bootstate.read_state(self.mounts["state"])
        failed = st.get("failed", [])
        floor = st.get("floor", 0)
        best = None
        self.refused = []  # (version, manifest_sha256, reason) newer releases this device cannot take
        for path in up.list_targets(prefix):
            if not path.endswith(".mspk"):
                continue
            ti = up.get_targetinfo(path)  # authoritative role for this exact path
            c = ti.custom if ti is not None else None
            if not c or c.get("type") != "package" or c.get("model") != self.model:
                continue
            try:
                version = parse_version(c.get("version"))
                why = self._installable(c, recalled, failed, floor)
            except (PackageError, TypeError):
                continue  # a malformed signed field: not a release for us
            if why:
                self.refused.append((c.get("version"), c.get("manifest_sha256"), why))
                continue
            if why is None and (best is None or version > best[2]):
                best = (ti, c, version)
        return best[:2] if best else None

    def _installable(self, c, recalled, failed, floor):
        # Filter on the signed custom fields with the installer's own policy
        # (updater/install/policy.py), so that an installable release is not
        # passed over for a newer one the installer would refuse.
        # None: installable; "": not for us (silently); else why it is refused.
        if c.get("channel", "stable") != self.cfg.get("channel", "stable") or c.get("version") in recalled:
            return ""
        rel = policy.from_custom(c)
        if not policy.is_newer(rel, self.version) or not policy.in_rollout(c, self.device_id):
            return ""  # older, or a staged rollout that does not include this device yet
        digest = c.get("manifest_sha256")
        if digest in failed:
            return "rolled back on this device before"
        if digest in self.rejected:
            return self.rejected[digest]
        return policy.refusal(rel, self.model, self.version, floor)

    def check_and_install(self, now):
        # The TUF client's code and metadata (~80 KB on the VM) are released
        # whatever the check's outcome: between checks they cost nothing.
        try:
            found = self._check(now)
        finally:
            release_modules(tuf.UNLOADABLE)
        if found is not None:
            self._install(now)

    def _check(self, now):
        # One TUF refresh and the choice of a release. Returns None, or sets
        # self.pending (what the install needs: no metadata) and returns True.
        if not self.check_slices:
            self._set(step="checking", version=self.version)
        try:
            up = self._tuf(now)
            up.refresh()
            self._note_tuf(up)
            found = self.find_release(up)
        except UpdatePaused:
            # What was accepted is on flash: the next tick goes on from there.
            self.check_slices += 1
            if self.check_slices < MAX_CHECK_SLICES:
                self.next_check = now
                return None
            self.check_slices = 0
            self._failed(now, "check_failed", "transport: the update server is too slow (refresh not done in %d slices)"
                         % MAX_CHECK_SLICES, self.version)
            return None
        except (DownloadError, OSError) as e:
            self.check_slices = 0
            self._failed(now, "check_failed", "transport: %s" % e, self.version)
            return None
        except RepositoryError as e:
            self.check_slices = 0
            self._set(step="rejected", reason="repository: %s" % e, version=self.version)
            return None
        self.check_slices = 0
        self.oom_retries = 0
        if found is None:
            # Nothing to install: give the TUF client's code back until the
            # next check (tuf.UNLOADABLE; the heap then has room for TLS
            # reconnects and command verification between checks).
            up = None
            release_modules(tuf.UNLOADABLE)
            self.failures = 0
            for version, digest, why in self.refused:
                # Say once why a newer release cannot be taken here.
                if digest not in self.rejected:
                    self.rejected[digest] = why
                    self._set(step="rejected", version=version, reason=why)
            if self.refused:
                version, digest, why = self.refused[0]
                self._set(step="refused", version=self.version, newest=version, reason=why, recalled=self.recalled)
            else:
                self._set(step="up_to_date", version=self.version, recalled=self.recalled)
            return None
        ti, c = found
        urgent = bool(c.get("urgent"))
        self._set(step="available", version=c["version"], urgent=urgent)
        why = gate.check(self.board.read_pump(), now, self.window, urgent)
        if why:
            self._defer("install", why, c["version"])
            return None
        # Keep only what the install needs (a TargetStream holds no
        # metadata); the caller gives the TUF client's RAM back before the
        # package streams (a 256 KiB heap holds one or the other, not both).
        self.pending = {"src": HttpSource(up.target_stream(ti)), "target": ti.path, "version": c["version"],
                        "manifest_sha256": c["manifest_sha256"], "urgent": urgent, "slices": 0}
        return True

    def _note_tuf(self, up):
        # Trusted top-level metadata [version, expiry] for posture
        # (agent/security); the fleet's assessment compares timestamp and
        # snapshot with the repository's ("stale TUF metadata").
        info = {}
        for role in ("root", "targets", "snapshot", "timestamp"):
            try:
                s = up.trusted.get(role)
                if s is not None:
                    info[role] = [s.version, getattr(s, "expires", None)]
            except (AttributeError, KeyError):
                pass
        self.tuf_info = info

    def _install(self, now):
        # One slice of the pending install (resumed from its journal).
        p = self.pending
        src = p["src"]
        self._gate_ms = None
        self._installing = True
        try:
            self.installer.install(src, p["target"], p["manifest_sha256"], p["urgent"])
        except UpdatePaused:
            p["slices"] += 1
            if p["slices"] < MAX_INSTALL_SLICES:
                return
            self.pending = None
            self._failed(now, "download_interrupted", "too slow: not installed in %d slices" % MAX_INSTALL_SLICES,
                         p["version"], downloaded=src.downloaded)
            return
        except InstallDeferred as e:
            self.pending = None
            self._defer("install", e.args[0], p["version"])
            return
        except TransferError as e:
            # Bytes that are not the signed ones: dropped, fetched again.
            self.pending = None
            self._failed(now, "retry", "bad transfer: %s" % e, p["version"], downloaded=src.downloaded)
            return
        except InstallError as e:
            self.pending = None
            self.rejected[p["manifest_sha256"]] = str(e)
            self._set(step="rejected", version=p["version"], reason=str(e))
            return
        except (DownloadError, OSError) as e:
            self.pending = None
            self._failed(now, "download_interrupted", str(e), p["version"], downloaded=src.downloaded)
            return
        finally:
            self._installing = False
        self.pending = None
        self.failures = 0
        self._set(step="installed", version=p["version"], downloaded=src.downloaded)
        j = self.installer.installed()
        if j is not None:
            self._activation_tick(self.board.time(), j)
