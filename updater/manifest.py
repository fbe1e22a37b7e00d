# micropython-lib style manifest of the device updater. The host-only TUF
# client entry (tuf/client_main.py) and README files are not listed: they
# never ship in a slot. loader.py and bootstate.py also go to the loader
# partition (host_tools/sim/build.py).
metadata(description="medsentry updater: TUF client, A/B install, boot loader", version="1.0.0")
require("board")
package("updater", files=("__init__.py", "bootstate.py", "loader.py"), base_path="..")
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
        "fields.py",
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
