# Frozen main.py of the medsentry STM32 firmware. The stm32 port runs it after
# boot: pyexec_file_if_exists() looks for a frozen module first, and no file
# system is mounted at boot (MICROPY_HW_FLASH_MOUNT_AT_BOOT 0).
#
# Ctrl-C is off before anything else runs (fail closed: the lock state is not
# known yet); rom.main() turns it back on for an open (factory) board only. A
# Ctrl-C that lands before that first line resets the board rather than
# reaching the REPL.
try:
    import micropython

    micropython.kbd_intr(-1)
    from board.stm32 import rom
except KeyboardInterrupt:
    import machine

    machine.reset()
rom.main()
