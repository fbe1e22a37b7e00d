# Entry script of a simulated board VM (the firmware's reset vector).
from board.sim.rom_main import main

main()
