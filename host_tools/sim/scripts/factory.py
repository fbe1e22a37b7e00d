# Entry script for factory programming of a simulated board's flash.
import sys

from board.sim import factory

factory.main(sys.argv[1])
