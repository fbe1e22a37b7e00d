# micropython-lib style manifest of the board HAL and the simulated board
# (firmware: frozen on hardware, the sim board's firmware tree here). A real
# port (board/stm32/) has its own firmware manifest and is not part of this one.
metadata(description="medsentry board HAL contract, compat shim and simulated board", version="1.0.0")
package("board", files=("__init__.py", "compat.py", "hal.py", "netguard.py"), base_path="..")
package("board/sim", base_path="..")
