# Board support: the HAL contract (board.hal) and its ports (board.sim, ...).
