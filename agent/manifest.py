# micropython-lib style manifest of the security agent (read on the host by
# host_tools/release/manifests.py; never shipped): builds ship what it lists.
metadata(description="medsentry security agent: telemetry, posture, update agent", version="1.0.0")
require("updater")
require("board")
package("agent", base_path="..")
# medsentry extension: the module the loader starts (recorded in slot.json)
entry("agent.main")
