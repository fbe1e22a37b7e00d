// medsentry NUCLEO-F767ZI: the SPI NOR on hardware SPI3 as the storage block
// device (the pattern of the stm32 boards with external SPI flash storage).
#include "py/mphal.h"
#include "storage.h"
#include "spi.h"

static const spi_proto_cfg_t spi_bus = {
    .spi = &spi_obj[2], // SPI3
    .baudrate = 25000000,
    .polarity = 0,
    .phase = 0,
    .bits = 8,
    .firstbit = SPI_FIRSTBIT_MSB,
};

static mp_spiflash_cache_t spi_bdev_cache;

const mp_spiflash_config_t spiflash_config = {
    .bus_kind = MP_SPIFLASH_BUS_SPI,
    .bus.u_spi.cs = MICROPY_HW_SPIFLASH_CS,
    .bus.u_spi.data = (void *)&spi_bus,
    .bus.u_spi.proto = &spi_proto,
    .cache = &spi_bdev_cache,
};

spi_bdev_t spi_bdev;

void MEDSENTRY_F767ZI_board_early_init(void) {
    // Deselect the NOR before anything talks on SPI3.
    mp_hal_pin_output(MICROPY_HW_SPIFLASH_CS);
    mp_hal_pin_high(MICROPY_HW_SPIFLASH_CS);
}
