# The sim board's UART console speaks MicroPython's raw REPL protocol.
import io
import devtest
from board.sim.console import Console
from board.sim.simboard import EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW


def _console(data, lock="open"):
    # Code run on the console writes through `w` (print goes to the real stdout).
    out = io.BytesIO()
    con = Console(io.BytesIO(data), out, lock_state=lambda: lock)
    con.globals["w"] = out.write
    return con, out


def _run(con):
    try:
        con.friendly_repl()
    except EOFError:
        pass


def test_raw_repl_exec_output_and_prompt():
    con, out = _console(b"\x01w(b'42')\x04\x02")
    _run(con)
    text = out.getvalue()
    assert b"raw REPL; CTRL-B to exit\r\n>" in text
    assert b"OK42\x04\x04>" in text


def test_raw_repl_error_goes_between_the_two_eofs():
    con, out = _console(b"\x01raise ValueError('bad')\x04")
    _run(con)
    text = out.getvalue()
    i = text.index(b"OK\x04")
    err = text[i + 3:]
    assert b"ValueError" in err and err.endswith(b"\x04>")


def test_raw_repl_keeps_globals_between_runs():
    con, out = _console(b"\x01x = 5\x04w(b'%d' % (x + 1))\x04")
    _run(con)
    assert b"OK6\x04\x04>" in out.getvalue()


def test_raw_paste_runs_code_with_flow_control():
    # MicroPython's raw-paste mode (mpremote's first choice): R\x01, the
    # window size (256, little endian), one \x01 per window consumed, \x04
    # at the end of data, then output \x04 errors \x04 prompt (no "OK").
    code = b"w(b'%d' % len('" + b"x" * 600 + b"'))"
    con, out = _console(b"\x01\x05A\x01" + code + b"\x04")
    _run(con)
    text = out.getvalue()
    i = text.index(b"R\x01")
    assert text[i + 2:i + 4] == b"\x00\x01"
    assert text[i + 4:].startswith(b"\x01" * (len(code) // 256) + b"\x04600\x04\x04>")


def test_raw_paste_is_declined_on_a_locked_board():
    con, out = _console(b"\x01\x05A\x01w(b'ran')\x04", lock="locked")
    _run(con)
    text = out.getvalue()
    assert b"R\x00" in text and b"ran" not in text


def test_soft_reset_from_raw_repl_asks_for_raw_reboot():
    con, out = _console(b"\x01\x04")
    e = devtest.raises(SystemExit, con.friendly_repl)
    code = e.args[0] if e.args else e.code
    assert code == EXIT_SOFT_RESET_RAW
    assert out.getvalue().endswith(b"soft reboot\r\n")


def test_friendly_repl_evaluates_and_soft_resets():
    con, out = _console(b"1+2\r\x04")
    e = devtest.raises(SystemExit, con.friendly_repl)
    code = e.args[0] if e.args else e.code
    assert code == EXIT_SOFT_RESET
    assert b"3\r\n" in out.getvalue()


def test_app_crash_falls_to_repl_with_traceback():
    con, out = _console(b"")

    def app():
        raise KeyError("boom")

    con.run(app)
    assert b"KeyError" in out.getvalue()


def _unreadable_fuse():
    raise OSError("fuse area unreadable")


def test_unknown_lock_state_is_locked():
    # No lock state given, an unreadable fuse, or any answer but "open": locked.
    code = b"\x01w(b'RAN')\x04"
    for con in (Console(io.BytesIO(code), io.BytesIO()),
                Console(io.BytesIO(code), io.BytesIO(), lock_state=_unreadable_fuse),
                _console(code, lock="unknown")[0], _console(code, lock="locked")[0]):
        assert con.locked()
        _run(con)
        out = con.out.getvalue()
        assert b"console locked" in out and b"RAN" not in out and b">>>" not in out


def test_lock_programmed_from_the_repl_closes_it_at_once():
    state = ["open"]
    out = io.BytesIO()
    con = Console(io.BytesIO(b"lock()\rw(b'AFTER')\r"), out, lock_state=lambda: state[0])

    def lock():
        state[0] = "locked"

    con.globals["lock"] = lock
    con.globals["w"] = out.write
    _run(con)
    assert b"console locked" in out.getvalue() and b"AFTER" not in out.getvalue()


def test_interrupt_of_the_app_on_a_locked_board_propagates():
    # Console.run must not turn a KeyboardInterrupt into a REPL on a locked board.
    con, out = _console(b"", lock="locked")

    def app():
        raise KeyboardInterrupt

    devtest.raises(KeyboardInterrupt, con.run, app)
    con, out = _console(b"")  # open (factory) board: the REPL follows, as on any MicroPython board
    con.run(app)
    assert b"KeyboardInterrupt" in out.getvalue()

