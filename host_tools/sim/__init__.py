"""Host side of the simulated board: build device code, make flash images,
supervise board VMs (power, reset, watchdog, UART), and control them."""
