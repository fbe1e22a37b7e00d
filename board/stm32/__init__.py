# The medsentry board port to the STM32F767 (ST NUCLEO-F767ZI plus an external
# SPI NOR flash), on the MicroPython stm32 port. Importable only there: it uses
# machine, pyb, stm and network.LAN of that port (see renode/README.md, "Board
# port").
