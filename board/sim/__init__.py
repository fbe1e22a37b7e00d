# The simulated board: a MicroPython VM with a capped heap, a littlefs flash
# image, a pty UART and a host supervisor playing power, reset and watchdog.
