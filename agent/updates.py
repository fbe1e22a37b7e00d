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
from updater import loader
from updater.install import gate
from updater.install.errors import InstallError
from updater.install.installer import Installer
from updater.install.manifest import parse_version
from updater.install.source import HttpSource
from updater.tuf.errors import DownloadError, RepositoryError

TUF_DIR = "tuf"  # under /state: trusted metadata (root.json provisioned)


class UpdateAgent:
    def __init__(self, board, slot, trial, cfg, report):
        self.board = board
        self.slot = slot
        self.trial = trial
        self.cfg = cfg["update"]
        self.report = report
        self.mounts = board.mounts()
        info = loader.slot_info(self.mounts["slot_" + slot]) or {}
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
        self.last_check = None
        self.deferrals = 0
        self.state = {"step": "trial" if trial else "idle", "version": self.version}
        self.recalled = False
        self.rejected = set()  # manifest hashes refused this boot: not fetched again

    # -- reporting -------------------------------------------------------------
    def _set(self, **kw):
        self.state = kw
        self.report(kw)

    def _progress(self, ev):
        # Called often during installs: keep the watchdog fed.
        self.board.watchdog_feed()
        if ev:
            self._set(**ev)

    def _defer(self, what, reason, version=None):
        self.deferrals += 1
        self._set(step="deferred", action=what, reason=reason, version=version, deferrals=self.deferrals)

    # -- the tick ----------------------------------------------------------------
    def tick(self, now):
        # Never let an update problem stop the agent: out of memory (a
        # fragmented heap) is reported and retried at the next check.
        try:
            self._tick(now)
        except MemoryError:
            gc.collect()
            self._set(step="error", reason="out of memory", version=self.version)

    def _tick(self, now):
        if self.trial:
            return self._trial_tick(now)
        if self.installer.installed():
            return self._activation_tick(now)
        every = self.cfg.get("check_every_s") or 300
        if self.cfg.get("metadata_url") and (self.last_check is None or now - self.last_check >= every):
            self.last_check = now
            self.check_and_install(now)

    def _trial_tick(self, now):
        st = loader.read_state(self.mounts["state"])
        trial = st.get("trial")
        if not trial:
            self.trial = False
            return
        if self.health_reason is None:
            r = selftest.run(self.board)
            if r is None and self.cfg.get("metadata_url"):
                r = self._server_reachable()
            if r is not None:
                self.health_reason = r
                self._set(step="trial", version=self.version, healthy=False, reason=r)
            else:
                self.healthy_loops += 1
        if self.health_reason is None and self.healthy_loops >= self.cfg.get("health_loops", 3):
            v = self.installer.confirm(now)
            self.trial = False
            self.counter = max(self.counter, trial.get("counter", 0))
            self._set(step="confirmed", version=v)
            return
        if self.health_reason is not None and now > trial.get("deadline", 0):
            # Give up: record why, then reboot into the loader's rollback -
            # but never in the middle of an infusion.
            why = gate.check(self.board.read_pump(), now, None, urgent=True)
            if why:
                self._defer("rollback reboot", why, self.version)
                return
            trial["health"] = self.health_reason
            trial["attempts"] = trial.get("max_attempts", 3)
            loader.write_state(self.mounts["state"], st)
            self._set(step="rolling_back", version=self.version, reason=self.health_reason)
            self.board.reset("trial failed: " + self.health_reason)

    def _server_reachable(self):
        try:
            from updater.tuf.fetcher import Fetcher

            Fetcher(connect_timeout=5, read_timeout=5).fetch_bytes(
                self.cfg["metadata_url"].rstrip("/") + "/timestamp.json", 16384)
        except DownloadError as e:
            return "update server unreachable: %s" % e
        return None

    def _activation_tick(self, now):
        j = self.installer.installed()
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
        return Updater(d, self.cfg["metadata_url"], target_base_url=self.cfg.get("targets_url"), now=now)

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
        self.recalled = self.version in recalled
        failed = loader.read_state(self.mounts["state"]).get("failed", [])
        best = None
        for path in up.list_targets(prefix):
            if not path.endswith(".mspk"):
                continue
            ti = up.get_targetinfo(path)  # authoritative role for this exact path
            c = ti.custom if ti is not None else None
            if not c or c.get("type") != "package" or c.get("model") != self.model:
                continue
            if c.get("channel", "stable") != self.cfg.get("channel", "stable") or c.get("version") in recalled:
                continue
            if c.get("manifest_sha256") in failed or c.get("manifest_sha256") in self.rejected:
                continue  # rolled back on this device before, or refused
            if parse_version(c["version"]) <= parse_version(self.version):
                continue
            if best is None or parse_version(c["version"]) > parse_version(best[1]["version"]):
                best = (ti, c)
        return best

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
        release_modules(("updater.tuf.updater", "updater.tuf.trusted_set", "updater.tuf.metadata",
                         "updater.crypto"))
        src = HttpSource(fetcher, url, length)
        try:
            self.installer.install(src, target, c["manifest_sha256"])
        except InstallError as e:
            self.rejected.add(c["manifest_sha256"])
            self._set(step="rejected", version=c["version"], reason=str(e))
            return
        except (DownloadError, OSError) as e:
            self._set(step="download_interrupted", version=c["version"], reason=str(e),
                      downloaded=src.downloaded)
            return
        j = self.installer.read_journal()
        if j is not None:
            j["urgent"] = urgent
            self.installer.j = j
            self.installer._save_journal()
        self._set(step="installed", version=c["version"], downloaded=src.downloaded)
        self._activation_tick(now)


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
