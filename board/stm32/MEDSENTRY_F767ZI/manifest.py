# Frozen modules of the medsentry STM32 firmware (MicroPython's
# tools/manifestfile.py; FROZEN_MANIFEST in mpconfigboard.mk). Frozen bytecode
# is compiled into the firmware image and runs in place from the internal
# flash: importing it allocates only module dicts and function objects on the
# heap, not the bytecode and constants (renode/README.md, "Firmware").
#
# $(PORT_DIR) and $(BOARD_DIR) come from MicroPython's build; $(MEDSENTRY) is
# this repository, passed as `make ... MICROPY_MANIFEST_MEDSENTRY=/path/to/it`
# (py/mkrules turns every MICROPY_MANIFEST_<NAME> into $(<NAME>) here).
include("$(PORT_DIR)/boards/manifest.py")  # the stm32 port's own frozen modules
require("ntptime")  # micropython-lib: the RTC from NTP (Stm32Board.sync_clock)

# The board: HAL contract, compat shim, egress guard and this port.
# board/sim is left out: it is the simulated board, not this one.
module("board/__init__.py", base_path="$(MEDSENTRY)")
module("board/hal.py", base_path="$(MEDSENTRY)")
module("board/compat.py", base_path="$(MEDSENTRY)")
module("board/netguard.py", base_path="$(MEDSENTRY)")
package("board/stm32", files=("__init__.py", "flash.py", "net.py", "otp.py", "rom.py", "sensors.py", "stmboard.py"),
        base_path="$(MEDSENTRY)")
module("main.py", base_path="$(BOARD_DIR)")  # starts board.stm32.rom

# The factory application (agent + updater). Frozen, it runs from flash; but
# the loader puts the booted slot first on sys.path, so an application on the
# slot (the factory one included) shadows these copies and is loaded into the
# heap as on the sim board. See renode/README.md for what makes the frozen
# copy (or a ROMFS slot) the one that runs.
package("agent", base_path="$(MEDSENTRY)")
package("updater", base_path="$(MEDSENTRY)")
