"""Robot Framework library: the host side of an update, for the Renode suites.

A real TUF repository (python-tuf, scrypt-protected demo keys from
host_tools.release.quickstart) served over loopback HTTP by the same server
`medsentry repo serve` runs (host_tools.release.serve). Host-only: the same
keywords serve a board under Renode or on the simulated board.

Keywords: Start Update Repository, Stop Update Repository, Publish Release,
Update Trust Anchor (the root.json and URLs a board is configured with).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from robot.api import logger
from robot.libraries.BuiltIn import BuiltIn

from host_tools import mpvm
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree
from host_tools.release.serve import RepositoryServer

PASS = DemoPassphrases("renode-suites")
# A regression the trial boot's health check catches: the SHA-256 known-answer test fails.
BAD_SELFTEST = (mpvm.REPO_ROOT / "agent" / "selftest.py").read_bytes().replace(
    b'_SHA256_ABC = "ba78', b'_SHA256_ABC = "ba79')


class UpdateRepo:
    ROBOT_LIBRARY_SCOPE = "GLOBAL"

    def __init__(self) -> None:
        self.work: Path | None = None
        self.root: bytes = b""
        self.server: RepositoryServer | None = None
        self.published: dict[tuple[str, str], str] = {}

    def start_update_repository(self, models: str = "pump-v2") -> None:
        out = Path(BuiltIn().get_variable_value("${OUTPUT DIR}"))
        self.work = out / "sim-work" / "release"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.root = ensure_models(self.work, PASS, tuple(models.split(","))).read_bytes()
        self.server = RepositoryServer(self.work / "repository").start()
        logger.info(f"TUF repository {self.work} served at {self.server.url}")

    def stop_update_repository(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def publish_release(self, version: str, counter, model: str = "pump-v2", failing=False) -> str:
        """Sign and publish a release; `failing=True` ships a regression its trial boot catches.
        A release already published in this suite is not published again."""
        if (model, version) in self.published:
            return self.published[(model, version)]
        if self.work is None:
            raise AssertionError("Start Update Repository first")
        bad = str(failing).lower() in ("true", "1", "yes")
        overrides = {"agent/selftest.py": BAD_SELFTEST} if bad else {"agent/release.txt": (version + "\n").encode()}
        tree = device_tree(self.work / "trees" / f"{model}-{version}", overrides)
        rel = publish_tree(self.work, PASS, model, version, int(counter), tree)
        logger.info(f"published {model} {version} (counter {counter}): {rel.target}")
        self.published[(model, version)] = rel.target
        return rel.target

    def update_trust_anchor(self) -> dict:
        if self.server is None:
            raise AssertionError("Start Update Repository first")
        return {"root": self.root, "metadata_url": self.server.url + "/metadata",
                "targets_url": self.server.url + "/targets"}
