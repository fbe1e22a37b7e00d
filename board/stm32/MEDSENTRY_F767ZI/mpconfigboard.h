// medsentry firmware for the ST NUCLEO-F767ZI with a 16 MiB SPI NOR on SPI3.
// Derived from ports/stm32/boards/NUCLEO_F767ZI/mpconfigboard.h of MicroPython
// (same clocks, UART3 REPL, Ethernet RMII pins); the differences are marked
// "medsentry:". Build: renode/README.md.

#define MICROPY_HW_BOARD_NAME       "NUCLEO-F767ZI medsentry"
#define MICROPY_HW_MCU_NAME         "STM32F767"

#define MICROPY_HW_HAS_SWITCH       (1)
#define MICROPY_HW_HAS_FLASH        (1)
#define MICROPY_HW_ENABLE_RNG       (1)
#define MICROPY_HW_ENABLE_RTC       (1)
#define MICROPY_HW_ENABLE_DAC       (0)
// medsentry: no USB device. The USB CDC REPL would be a second console that
// the OTP console lock does not cover; the only console is UART3.
#define MICROPY_HW_ENABLE_USB       (0)

// medsentry: AES for the telemetry seal (agent/telemetry/aes_ccm.py imports
// cryptolib; modes ECB and CBC are what it uses).
#define MICROPY_PY_CRYPTOLIB        (1)

// medsentry: the flash partitions (board/stm32/flash.py) live on the SPI NOR;
// the internal flash holds only the firmware. Nothing is mounted at boot, so
// the port never formats the NOR ("factory reset" of a file system it does
// not recognise): the frozen main.py mounts the partitions and refuses to
// format a bad one.
#define MICROPY_HW_ENABLE_INTERNAL_FLASH_STORAGE (0)
#define MICROPY_HW_FLASH_MOUNT_AT_BOOT (0)
#define MICROPY_HW_SPIFLASH_SIZE_BITS (128 * 1024 * 1024)  // W25Q128JV-class, 4 KiB sectors
#define MICROPY_HW_SPIFLASH_CS      (pin_A4)
#define MICROPY_HW_SPIFLASH_SCK     (pin_B3)
#define MICROPY_HW_SPIFLASH_MISO    (pin_B4)
#define MICROPY_HW_SPIFLASH_MOSI    (pin_B5)
#define MICROPY_HW_SPIFLASH_ENABLE_CACHE (1)
#define MICROPY_HW_SPI_IS_RESERVED(id) ((id) == 3)  // SPI3 belongs to the NOR

extern const struct _mp_spiflash_config_t spiflash_config;
extern struct _spi_bdev_t spi_bdev;
#define MICROPY_HW_BDEV_IOCTL(op, arg) ( \
    (op) == BDEV_IOCTL_NUM_BLOCKS ? (MICROPY_HW_SPIFLASH_SIZE_BITS / 8 / FLASH_BLOCK_SIZE) : \
    (op) == BDEV_IOCTL_INIT ? spi_bdev_ioctl(&spi_bdev, (op), (uint32_t)&spiflash_config) : \
    spi_bdev_ioctl(&spi_bdev, (op), (arg)) \
    )
#define MICROPY_HW_BDEV_READBLOCKS(dest, bl, n) spi_bdev_readblocks(&spi_bdev, (dest), (bl), (n))
#define MICROPY_HW_BDEV_WRITEBLOCKS(src, bl, n) spi_bdev_writeblocks(&spi_bdev, (src), (bl), (n))
// pyb.Flash(start=, len=) then uses the extended block protocol straight on
// the NOR: 4 KiB native blocks, ioctl(6) erases one sector, no RAM cache.
#define MICROPY_HW_BDEV_SPIFLASH_EXTENDED (&spi_bdev)

#define MICROPY_BOARD_EARLY_INIT    MEDSENTRY_F767ZI_board_early_init
void MEDSENTRY_F767ZI_board_early_init(void);

// HSE is 8MHz (from the ST-LINK MCO), 216 MHz SYSCLK
#define MICROPY_HW_CLK_PLLM (4)
#define MICROPY_HW_CLK_PLLN (216)
#define MICROPY_HW_CLK_PLLP (RCC_PLLP_DIV2)
#define MICROPY_HW_CLK_PLLQ (9)
#define MICROPY_HW_FLASH_LATENCY (FLASH_LATENCY_7) // 210-216 MHz needs 7 wait states

// medsentry: the RTC runs from the 32.768 kHz LSE crystal (X2) of the Nucleo-144.
#define MICROPY_HW_RTC_USE_LSE      (1)

// UART config: UART3 = ST-LINK virtual COM port = the console;
// USART6 = the pump controller link (board/stm32/sensors.py)
#define MICROPY_HW_UART3_TX         (pin_D8)
#define MICROPY_HW_UART3_RX         (pin_D9)
#define MICROPY_HW_UART6_TX         (pin_G14)
#define MICROPY_HW_UART6_RX         (pin_G9)
#define MICROPY_HW_UART_REPL        PYB_UART_3
#define MICROPY_HW_UART_REPL_BAUD   115200

// I2C1 = the vitals front-end (board/stm32/sensors.py)
#define MICROPY_HW_I2C1_SCL         (pin_B8)
#define MICROPY_HW_I2C1_SDA         (pin_B9)

// SPI3 = the SPI NOR (hardware SPI, CS driven as a GPIO)
#define MICROPY_HW_SPI3_SCK         (pin_B3)
#define MICROPY_HW_SPI3_MISO        (pin_B4)
#define MICROPY_HW_SPI3_MOSI        (pin_B5)

// USRSW is pulled low. Pressing the button makes the input go high.
#define MICROPY_HW_USRSW_PIN        (pin_C13)
#define MICROPY_HW_USRSW_PULL       (GPIO_NOPULL)
#define MICROPY_HW_USRSW_EXTI_MODE  (GPIO_MODE_IT_RISING)
#define MICROPY_HW_USRSW_PRESSED    (1)

// LEDs
#define MICROPY_HW_LED1             (pin_B0) // green: running
#define MICROPY_HW_LED2             (pin_B7) // blue
#define MICROPY_HW_LED3             (pin_B14) // red: halted
#define MICROPY_HW_LED_ON(pin)      (mp_hal_pin_high(pin))
#define MICROPY_HW_LED_OFF(pin)     (mp_hal_pin_low(pin))

// Ethernet via RMII (LAN8742A PHY at MDIO address 0)
#define MICROPY_HW_ETH_MDC          (pin_C1)
#define MICROPY_HW_ETH_MDIO         (pin_A2)
#define MICROPY_HW_ETH_RMII_REF_CLK (pin_A1)
#define MICROPY_HW_ETH_RMII_CRS_DV  (pin_A7)
#define MICROPY_HW_ETH_RMII_RXD0    (pin_C4)
#define MICROPY_HW_ETH_RMII_RXD1    (pin_C5)
#define MICROPY_HW_ETH_RMII_TX_EN   (pin_G11)
#define MICROPY_HW_ETH_RMII_TXD0    (pin_G13)
#define MICROPY_HW_ETH_RMII_TXD1    (pin_B13)
