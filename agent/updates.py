# The update agent: the device side of a patch's journey after publication.
#
# Every loop tick (never blocking for long; long steps feed the watchdog):
#  - on a trial boot: run the health check (self-test, a few healthy loops,
#    the update server reachable); healthy -> confirm (floor rises); failing
#    past the deadline -> note why and reboot when the clinical gate allows,
#    so the loader rolls back;
#  - a finished install waiting for activation: activate and reboot when the
#    gate allows;
#  - every check_every_s: TUF refresh, pick the newest release for this model
#    and channel that is not recalled, and install it when the gate allows.
# Every step and every deferral is reported through `report(dict)`.
import gc

from agent import selftest
from updater import bootstate
from updater.install import gate
from updater.install.errors import InstallError, PackageError
from updater.install.installer import Installer
from updater.install.manifest import parse_version
from updater.install.source import HttpSource
from board.compat import ticks_ms, ticks_diff
from updater import tuf
from updater.tuf.errors import DownloadError, RepositoryError

TUF_DIR = "tuf"  # under /state: trusted metadata (root.json provisioned)
GATE_EVERY_MS = 1000  # how often a running download re-checks the pump


class InstallDeferred(RuntimeError):
    # Raised from the busy hook when the pump starts infusing (or alarms)
    # during a download: the install stops at once and resumes from its
    # journal when the gate allows. args[0]: the gate's reason.
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
        self.healthy_loops = 0
        self.health_reason = None
        self.started_ms = ticks_ms()  # trial deadline counts this boot's uptime
        self.recalled_versions = set()
        self.refused = []
        # Called while an update step keeps the main loop busy (downloads,
        # installs): the agent adds what must go on meanwhile (sampling).
        self.busy_hooks = []
        self._installing = False
        self._gate_ms = None
        self.last_check = None
        self.deferrals = 0
        self.rejected = set()  # manifest hashes refused this boot: not fetched again

    @property
    def recalled(self):
        # The running version is on the model's signed recall list.
        return self.version in self.recalled_versions

    # -- reporting -------------------------------------------------------------
    def _set(self, **kw):
        self.report(kw)

    def _busy(self):
        # At least every half second during network waits and for every
        # chunk of an install: feed the watchdog, let sampling go on, and
        # while installing keep the clinical gate watching (an infusion may
        # start mid-download: the install stops and resumes later).
        self.board.watchdog_feed()
        for hook in self.busy_hooks:
            hook()
        if self._installing:
            now_ms = ticks_ms()
            if self._gate_ms is None or ticks_diff(now_ms, self._gate_ms) >= GATE_EVERY_MS:
                self._gate_ms = now_ms
                why = gate.check(self.board.read_pump(), self.board.time(), None, True)
                if why:
                    raise InstallDeferred(why)

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

    # -- the tick ----------------------------------------------------------------
    def tick(self, now):
        # Never let an update problem stop the agent: out of memory (a
        # fragmented heap), a refused install or bad repository data found
        # outside the install itself are reported; the next check retries.
        try:
            self._tick(now)
        except MemoryError:
            gc.collect()
            self._set(step="error", reason="out of memory", version=self.version)
        except (InstallError, RepositoryError) as e:
            self._set(step="error", reason=str(e), version=self.version)

    def _tick(self, now):
        if self.trial:
            return self._trial_tick(now)
        j = self.installer.installed()
        if j is not None:
            return self._activation_tick(now, j)
        every = self.cfg.get("check_every_s") or 300
        if self.cfg.get("metadata_url") and (self.last_check is None or now - self.last_check >= every):
            self.last_check = now
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
        if r is None and self.cfg.get("metadata_url"):
            r = self._server_reachable()
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
            self.board.reset("trial failed: " + reason)

    def _server_reachable(self):
        try:
            self._fetcher().fetch_bytes(self.cfg["metadata_url"].rstrip("/") + "/timestamp.json", 16384)
        except DownloadError as e:
            return "update server unreachable: %s" % e
        return None

    def _activation_tick(self, now, j):
        # j: the journal of a finished install waiting for activation.
        if j.get("version") in self.recalled_versions:
            # Recalled while it waited for the gate: never activate it.
            self.installer._drop_journal()
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
            check = info.hash_check()
            up.fetcher.fetch(up.target_url(info), _Checked(sink, check), info.length)
            check.finish()
            for r in json.loads(bytes(sink.buf)).get("recalled", []):
                recalled.add(r.get("version"))
        self.recalled_versions = recalled
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
                why = self._installable(c, version, recalled, failed, floor)
            except (PackageError, TypeError):
                continue  # a malformed signed field: not a release for us
            if why:
                self.refused.append((c.get("version"), c.get("manifest_sha256"), why))
                continue
            if why is None and (best is None or version > best[2]):
                best = (ti, c, version)
        return best[:2] if best else None

    def _installable(self, c, version, recalled, failed, floor):
        # Filter on the signed custom fields, so that an installable release
        # is not passed over for a newer one the installer would refuse.
        # None: installable; "": not for us (silently); else why it is refused.
        if c.get("channel", "stable") != self.cfg.get("channel", "stable") or c.get("version") in recalled:
            return ""
        if c.get("manifest_sha256") in failed or c.get("manifest_sha256") in self.rejected:
            return ""  # rolled back on this device before, or refused already
        running = parse_version(self.version)
        if version <= running:
            return ""
        if c.get("security_counter", 0) < floor:
            return "security counter %s is below this device's floor %d" % (c.get("security_counter"), floor)
        if parse_version(c.get("min_base_version", "0.0.0")) > running:
            return "package needs at least version %s, this device runs %s" % (c.get("min_base_version"), self.version)
        if c.get("package_kind") == "patch" and c.get("base_version") != self.version:
            return "patch is against %s, this device runs %s" % (c.get("base_version"), self.version)
        return None

    def check_and_install(self, now):
        self._set(step="checking", version=self.version)
        try:
            up = self._tuf(now)
            up.refresh()
            found = self.find_release(up)
        except (DownloadError, OSError) as e:
            self._set(step="check_failed", reason="transport: %s" % e, version=self.version)
            return
        except RepositoryError as e:
            self._set(step="rejected", reason="repository: %s" % e, version=self.version)
            return
        if found is None:
            for version, digest, why in self.refused:
                # Say once why a newer release cannot be taken here.
                self.rejected.add(digest)
                self._set(step="rejected", version=version, reason=why)
            self._set(step="up_to_date", version=self.version, recalled=self.recalled)
            return
        ti, c = found
        urgent = bool(c.get("urgent"))
        self._set(step="available", version=c["version"], urgent=urgent)
        why = gate.check(self.board.read_pump(), now, self.window, urgent)
        if why:
            self._defer("install", why, c["version"])
            return
        # Keep only what the install needs, then give the TUF client's RAM
        # back before streaming the package (a 256 KiB heap holds one or the
        # other comfortably, not both).
        url, length, target = up.target_url(ti), ti.length, ti.path
        c = {"version": c["version"], "manifest_sha256": c["manifest_sha256"]}
        fetcher = up.fetcher
        up = ti = found = None
        release_modules(tuf.UNLOADABLE)
        src = HttpSource(fetcher, url, length)
        self._gate_ms = None
        self._installing = True
        try:
            self.installer.install(src, target, c["manifest_sha256"], urgent)
        except InstallDeferred as e:
            self._defer("install", e.args[0], c["version"])
            return
        except InstallError as e:
            self.rejected.add(c["manifest_sha256"])
            self._set(step="rejected", version=c["version"], reason=str(e))
            return
        except (DownloadError, OSError) as e:
            self._set(step="download_interrupted", version=c["version"], reason=str(e),
                      downloaded=src.downloaded)
            return
        finally:
            self._installing = False
        self._set(step="installed", version=c["version"], downloaded=src.downloaded)
        j = self.installer.installed()
        if j is not None:
            self._activation_tick(self.board.time(), j)


def release_modules(prefixes):
    # Drop modules from sys.modules so their bytecode can be collected: on the
    # unix VM (and any port loading .mpy into RAM) code lives on the heap. The
    # next check imports them again. Frozen firmware would not need this.
    import sys

    for name in list(sys.modules):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                del sys.modules[name]
                # The parent package keeps a reference too.
                parent, _, child = name.rpartition(".")
                pkg = sys.modules.get(parent)
                if pkg is not None and child in getattr(pkg, "__dict__", {}):
                    try:
                        delattr(pkg, child)
                    except AttributeError:
                        pass
                break
    gc.collect()


class _Checked:
    def __init__(self, sink, check):
        self.sink = sink
        self.check = check

    def write(self, mv):
        self.check.update(mv)
        self.sink.write(mv)
