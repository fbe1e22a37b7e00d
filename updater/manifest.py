# micropython-lib style manifest of the device updater: what ships in an
# application slot. Not listed: the host-only TUF client entry
# (tuf/client_main.py), README files, and loader.py, which lives only in the
# flash loader partition (with bootstate.py beside it, host_tools/sim/build.py;
# the app never imports the loader).
metadata(description="medsentry updater: TUF client, A/B install, boot loader", version="1.0.0")
require("board")
package("updater", files=("__init__.py", "bootstate.py"), base_path="..")
package("updater/crypto", base_path="..")
package("updater/install", base_path="..")
package(
    "updater/tuf",
    files=(
        "__init__.py",
        "dsse.py",
        "envelope.py",
        "errors.py",
        "fetcher.py",
        "hashes.py",
        "metadata.py",
        "patterns.py",
        "signatures.py",
        "transport.py",
        "trusted_set.py",
        "updater.py",
        "urls.py",
    ),
    base_path="..",
)
