# Frozen main.py of the medsentry STM32 firmware: the stm32 port runs it after
# boot (a frozen module is found before any file system; none is mounted at
# boot, MICROPY_HW_FLASH_MOUNT_AT_BOOT is 0).
from board.stm32 import rom

rom.main()
