# Runs one device test function on the MicroPython VM and prints one result
# line: "@@MSTEST PASS", "@@MSTEST SKIP <reason>" or a traceback then
# "@@MSTEST FAIL". Started by tests/device/conftest.py, one VM per test.
import sys
import gc

module_name = sys.argv[1]
func_name = sys.argv[2]

import devtest

mod = __import__(module_name)
fn = getattr(mod, func_name)
gc.collect()
try:
    fn()
except devtest.SkipTest as e:
    print("@@MSTEST SKIP", e)
    sys.exit(0)
except BaseException as e:  # report anything, including MemoryError
    sys.print_exception(e)
    print("@@MSTEST FAIL")
    sys.exit(1)
gc.collect()
print("@@MSTEST PASS")
