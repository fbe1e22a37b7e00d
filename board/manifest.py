# micropython-lib style manifest of the board HAL and the simulated board
# (firmware: frozen on hardware, the sim board's firmware tree here).
metadata(description="medsentry board HAL contract, compat shim and simulated board", version="1.0.0")
package("board", base_path="..")
